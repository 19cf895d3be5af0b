#!/usr/bin/perl

# gpt_auth: offboarding with gpt_auth_revoked. A file of "address time" lines, re-read when it
# changes (no reload): the sessions of that user issued up to the time are refused (a browser
# is sent to sign in again, an API client gets 401, an [info] line says why), sessions issued
# after it pass, and the user's personal API keys made up to the time are refused too. Lines
# written by `gpt-auth revoke`; a broken file keeps the last good list; `nginx -t` errors.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use GptAuthQuota;
use Time::HiRes qw/ sleep /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/);
my $dir = $t->testdir();

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_login_url https://auth.example.test/login;
    gpt_auth_quota_zone zone=k:1m;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-Result "$gpt_auth_result" always;
        gpt_auth_revoked %%TESTDIR%%/revoked.txt;
        gpt_auth_bearer zone=k;

        location / {
            gpt_auth on;
        }

        location = /keys {
            gpt_auth on;
            gpt_auth_api_keys zone=k max=3;
        }

        location /open/ {
            gpt_auth on;
            gpt_auth_revoked off;
        }
    }
}

EOF

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, "$dir/keys";
$t->write_file('revoked.txt', "# nobody yet\n");
$t->write_file('index.html', 'page');
mkdir "$dir/open";
$t->write_file('open/index.html', 'open page');

# nginx -t: a broken file at start

$t->write_file('bad.txt', "alice\@example.com yesterday\n");
my ($ok, $out) = conf_test($t, 'bad.conf', <<"EOF");
%%TEST_GLOBALS%%
daemon off;
events {
}
http {
    %%TEST_GLOBALS_HTTP%%
    gpt_auth_revoked $dir/bad.txt;
}
EOF

$t->run()->plan(15);

ok(!$ok && $out =~ /\[emerg\].*revocation list "[^"]*bad\.txt": line 1: invalid time \(2026-12-04T09:30:00Z or Unix seconds\)/,
	'nginx -t: a bad line names the file, the line and why') or diag($out);

my $now = time();
my $old = cookie_for($key, 'alice@example.com', iat => $now - 600);
my sub get {
	my ($uri, $cookie, %a) = @_;
	my $r = request($uri, cookie => $cookie, %a);
	return status($r) . ' ' . (header($r, 'X-Result') // '-');
}

is(get('/', $old), '200 allowed', 'before: alice\'s session passes');
my $made = quota_json(body(request('/keys', cookie => $old, method => 'POST',
	body => 'action=create&name=laptop',
	headers => [ 'Content-Type: application/x-www-form-urlencoded',
		'Accept: application/json' ]))) // {};
# (requests with the key go to /: the index module's internal redirect to /index.html runs the
# access check again, after the key's headers were hidden from the upstream)
my $apikey = $made->{key} // '-';
is(status(request('/', headers => [ "Authorization: Bearer $apikey" ])), 200,
	'before: her API key passes');

# offboarding: a line written by `gpt-auth revoke`, appended

my $line = `$ENV{GPT_AUTH_CLI} revoke Alice\@Example.com --now $now`;
chomp $line;
like($line, qr/^alice\@example\.com \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'gpt-auth revoke prints a line');
sleep 1.1;	# a new modification time, and the once-a-second check
my $mark = log_offset($t);
$t->write_file('revoked.txt', "# nobody yet\n$line   # left today\n");
sleep 1.2;

my $r = request('/', cookie => $old, accept => 'text/html');
is(status($r) . ' ' . (header($r, 'X-Result') // '-'), '302 invalid',
	'after: her old session is refused, a browser is sent to sign in');
like(header($r, 'Location') // '', qr{^https://auth\.example\.test/login}, 'to the login page');
is(get('/', $old, accept => 'application/json'), '401 invalid', 'an API client gets 401');
like(log_since($t, $mark), qr/\[info\].*gpt_auth: access refused: session cookie "gpt_auth": session revoked \(issued before the time in the revocation list\)/,
	'[info] says why');
is(status(request('/', headers => [ "Authorization: Bearer $apikey" ])), 401,
	'her API key made before the time is refused too');
like(log_since($t, $mark), qr/\[info\].*access refused: API key revoked \(made before the time in the revocation list\)/,
	'[info] for the key');

my $new = cookie_for($key, 'alice@example.com', iat => $now + 1);
is(get('/', $new), '200 allowed', 'a session issued after the time passes (she signed in again)');
is(get('/', cookie_for($key, 'bob@example.com', iat => $now - 600)), '200 allowed',
	'other users are not affected');
is(get('/open/', $old), '200 allowed', 'gpt_auth_revoked off: not checked there');

# a broken file: the last good list stays

$mark = log_offset($t);
$t->write_file('revoked.txt', "$line\nnot a line\n");
sleep 1.2;
is(get('/', $old), '401 invalid', 'broken file: the last good list stays in force');
like(log_since($t, $mark), qr/\[error\].*revocation list "[^"]*revoked\.txt": line 2: expected an address and a time .*; keeping the last good list \(1 entries\)/,
	'[error] names the line');

###############################################################################
