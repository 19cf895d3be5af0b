#!/usr/bin/perl

# gpt_auth: personal API keys. A signed-in user creates keys on the gpt_auth_api_keys page
# (shown once), lists them (created, last used) and revokes them; the openai SDK then calls the
# API with `Authorization: Bearer <key>` (gpt_auth_bearer), the key's owner gets the same
# allowlists, model rules and budgets, and neither the key nor a cookie reaches the provider
# (the operator's key does). Tampered, forged and revoked keys are refused like bad cookies;
# a revocation holds in every worker at once and across a restart (the zone's state file).

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use GptAuthQuota qw/ cookie_for quota_json /;
use GptAuthAI;
use Time::HiRes qw/ sleep /;
use MIME::Base64 qw/ encode_base64url /;
use Digest::SHA qw/ hmac_sha256 /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_quota_zone zone=team:1m state=%%TESTDIR%%/team.quota interval=1s;

    server {
        listen       127.0.0.1:8080 reuseport;
        server_name  localhost;

        gpt_auth_bearer zone=team;
        proxy_set_header Authorization "Bearer company-key";

        location = /keys {
            gpt_auth on;
            gpt_auth_api_keys zone=team max=3;
        }

        location /v1/ {
            gpt_auth on;
            gpt_auth_api openai;
            gpt_auth_models gpt-4o-mini;
            gpt_auth_meter on;
            gpt_auth_quota zone=team;
            proxy_pass http://127.0.0.1:8081;
        }

        location /alice-only/ {
            gpt_auth on;
            gpt_auth_allowlist %%TESTDIR%%/alice.allow;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /no-keys/ {
            gpt_auth on;
            gpt_auth_bearer off;
            proxy_pass http://127.0.0.1:8081/;
        }

        location = /report {
            gpt_auth on;
            gpt_auth_quota_report zone=team;
        }
    }
}

EOF

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';
$t->write_file('alice.allow', "alice\@example.com\n");

my $mock = start_mock($t, port(8081), '--require-key', 'company-key');
$t->run()->plan(42);

###############################################################################

my $base = 'http://127.0.0.1:' . port(8080);
my %cookie = map { $_ => cookie_for($key, "$_\@example.com") } qw/ alice bob /;

my sub keys_page {
	my ($user, $form, @headers) = @_;
	return request('/keys', cookie => $cookie{$user},
		defined $form ? (method => 'POST', body => $form) : (),
		headers => ['Content-Type: application/x-www-form-urlencoded', @headers]);
}

my sub create {
	my ($user, $name) = @_;
	my $r = keys_page($user, "action=create&name=$name", 'Accept: application/json');
	return (quota_json(body($r)) // {}, $r);
}

my sub listed {
	my ($user) = @_;
	return (quota_json(body(keys_page($user, undef, 'Accept: application/json'))) // {})->{keys} // [];
}

my sub with_key {
	my ($k, %a) = @_;
	return sdk(base_url => "$base/v1", call => 'chat', model => 'gpt-4o-mini', api_key => $k, %a)
		// {};
}

my sub api_status {
	my ($uri, @headers) = @_;
	return status(request($uri, headers => \@headers));
}

# the page

my $r = keys_page('alice');
is(status($r), 200, 'the keys page for a signed-in user');
like(body($r), qr/No keys yet/, 'no keys at first');
like(header($r, 'Cache-Control') // '', qr/no-store/, 'never cached');
is(status(request('/keys')), 401, 'no session: no page');

my ($k1, $cr) = create('alice', 'laptop');
is(status($cr), 201, 'a key is created');
like($k1->{key} // '', qr/^gak1\.[\w-]{8}\.[\w-]{16}\.[\w-]+\.[\w-]{43}$/, 'the key, once');
$r = keys_page('alice', 'action=create&name=ci%20job');
like(body($r), qr{copy it now, it is not shown again:</p><p><code>(gak1\.[^<]+)</code>},
	'the HTML page shows a new key once');
my ($k2) = body($r) =~ m{<code>(gak1\.[^<]+)</code>};
my $l = listed('alice');
is(join(',', sort map { $_->{name} } @$l), 'ci job,laptop', 'both listed, with their names');
is(scalar(grep { defined $_->{last_used} } @$l), 0, 'never used yet');
unlike(body(keys_page('alice')), qr/\Q$k1->{key}\E/, 'the list never shows a key again');
is(scalar @{ listed('bob') }, 0, 'bob sees none of alice\'s keys');

# used by the openai SDK

my $res = with_key($k1->{key});
ok($res->{ok}, 'the openai SDK calls the API with the key') or diag(explain($res));
my $m = mock_log($mock)->[-1] // {};
is($m->{request_headers}{authorization}, 'Bearer company-key',
	'the provider gets the company\'s key, not the user\'s');
ok(!grep({ /gak1\./ } values %{ $m->{request_headers} // {} }), 'no header carries the key');
my ($l1) = grep { $_->{id} eq $k1->{id} } @{ listed('alice') };
like($l1->{last_used} // '', qr/^\d{4}-\d\d-\d\dT/, 'last used noted');
my $j = quota_json(body(request('/report?format=json', cookie => $cookie{alice}))) // {};
my ($u) = grep { $_->{email} eq 'alice@example.com' } @{ $j->{users} // [] };
is($u->{usage}{day}{output_tokens}, 50, 'charged to the key\'s owner');
$res = with_key($k1->{key}, model => 'gpt-4o');
is($res->{status}, 403, 'the owner\'s model rules apply');
is(api_status('/alice-only/v1/models', "x-api-key: $k1->{key}"), 200,
	'x-api-key (Anthropic\'s header) works too');
is(api_status('/no-keys/v1/models', "Authorization: Bearer $k1->{key}"), 401,
	'a location with gpt_auth_bearer off does not take keys');

# bob's key and an allowlist

my ($kb) = create('bob', 'script');
is(api_status('/alice-only/v1/models', "Authorization: Bearer $kb->{key}"), 403,
	'the allowlist applies to the key\'s owner');

# tampered and forged keys

my $log = log_offset($t);
(my $bad = $k1->{key}) =~ s/(.)$/$1 eq 'A' ? 'B' : 'A'/e;
$res = with_key($bad);
is($res->{error_class}, 'AuthenticationError', 'a tampered key: the SDK\'s authentication error');
is($res->{status}, 401, 'with 401');
my $other = new_key_bytes();
my @f = split /\./, $k1->{key};
my $forged = join('.', @f[0 .. 3]) . '.' . encode_base64url(
	hmac_sha256("gpt_auth api key=" . join('.', @f[0 .. 3]), $other));
is(with_key($forged)->{status}, 401, 'a key signed with another secret: 401');
(my $stolen_owner = $k1->{key}) =~ s/^((?:[^.]+\.){3})[^.]+/$1 . encode_base64url('bob\@example.com')/e;
is(with_key($stolen_owner)->{status}, 401, 'another owner written into a key: 401');
my $cookie_value = $cookie{alice} =~ s/^gpt_auth=//r;
is(api_status('/v1/models', "Authorization: Bearer $cookie_value"), 401,
	'a session cookie value is no key');
is(api_status('/v1/models', 'Authorization: Bearer gak1.' . ('x' x 600)), 401, 'a long one: 401');
my $since = log_since($t, $log);
like($since, qr/\[info\] .*access refused: API key with a bad signature/, 'an info line');
unlike($since, qr/\Q$k1->{key}\E|\Q$bad\E/, 'which never has the key');

# managing keys: sessions only, this site only, at most max=

is(status(request('/keys', method => 'POST', body => 'action=create',
	headers => ["Authorization: Bearer $k1->{key}",
		'Content-Type: application/x-www-form-urlencoded'])), 403,
	'a key cannot make more keys');
is(status(keys_page('alice', 'action=create', 'Origin: http://evil.example')), 403,
	'a form of another site is refused');
my (undef, $third) = create('alice', 'three');
my (undef, $fourth) = create('alice', 'four');
is(status($third) . ' ' . status($fourth), '201 409', 'max=3: the fourth is refused');

# revoked: refused at once, by every worker

my $k2_id = (split /\./, $k2 // '')[2] // '';
$r = keys_page('alice', "action=revoke&id=$k2_id");
is(status($r), 303, 'revoked (then back to the list)');
is(join(',', sort map { $_->{name} } @{ listed('alice') }), 'laptop,three', 'no longer listed');
$log = log_offset($t);
my @codes = map { api_status('/v1/models', "Authorization: Bearer $k2") } 1 .. 6;
is("@codes", '401 401 401 401 401 401', 'the revoked key is refused by every worker');
like(log_since($t, $log), qr/access refused: API key revoked or unknown to the zone/,
	'saying why');
is(status(keys_page('bob', "action=revoke&id=$k1->{id}")), 404, 'bob cannot revoke alice\'s key');

# across a restart: the records are in the state file, never the keys

sleep(1.5);
my $state = $t->read_file('team.quota');
like($state, qr/^apikey \Q$k1->{id}\E alice\@example.com \d+ \d+ laptop$/m,
	'the state file has the key\'s record');
unlike($state, qr/gak1\./, 'and not the key');
$t->stop();
$t->run();
is(api_status('/v1/models', "Authorization: Bearer $k1->{key}"), 200,
	'after a restart the key works');
is(api_status('/v1/models', "Authorization: Bearer $k2"), 401, 'and the revoked one does not');

# a reload that resizes the zone: the keys are taken over from the old zone

(my $conf = $t->read_file('nginx.conf')) =~ s/zone=team:1m/zone=team:2m/;
$t->write_file('nginx.conf', $conf);
$log = log_offset($t);
GptAuth::reload_and_wait($t) or diag('reload did not complete');
like(log_since($t, $log), qr/gpt_auth_quota_zone "team": \d+ users and groups and 3 API keys taken over/,
	'a resized zone takes the keys over');
is(api_status('/v1/models', "Authorization: Bearer $k1->{key}"), 200, 'and the key works');

###############################################################################
