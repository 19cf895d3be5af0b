#!/usr/bin/perl

# gpt_auth: provider faults not covered by gpt_auth_callback.t, at each of the three endpoints
# (OpenID discovery, JWKS, token exchange): down, slow beyond the proxy timeout, 500, truncated
# JSON, an answer cut off by the connection closing early, a body over the fetch size limit.
# Each: a clear 502 or 504 page, exactly one `gpt_auth:` [error] line, no cookie, no worker
# crash; and users who already have a session keep working throughout: with one worker
# process, while a login and a callback wait for a provider that does not answer, requests
# with a valid session to a protected location on that same worker get 200 promptly.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx qw/ :DEFAULT http_start /;
use GptAuth;
use FakeIdP;
use IdToken;
use LoginFlow;
use Hardening;

use JSON::PP;
use Time::HiRes ();

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/);
my $idp = FakeIdP->new($t, 8081);
my $IDP = $idp->url();
my $DOWN = 'http://127.0.0.1:' . port(8082);	# nothing listens there

my @providers = qw/ disc sdisc jwks jdown sjwks tok /;
my $blocks = join('', map { <<"EOF" } @providers);
    gpt_auth_provider $_ {
        issuer http://127.0.0.1:8081/$_;
        client_id $_-client;
        client_secret_file %%TESTDIR%%/secret;
    }
EOF

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;
worker_processes 1;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_cookie_secure off;
    gpt_auth_login_url /login;

%%PROVIDERS%%
    server {
        listen       127.0.0.1:8080;
        server_name  auth.example.test;

        include %%FETCH_CONF%%;

        add_header X-Pid $pid always;

        location = /login {
            gpt_auth_login %%NAMES%%;
        }

        location = /callback {
            gpt_auth_callback;
        }

        location / {
            gpt_auth on;
            add_header X-User $gpt_auth_email always;
            add_header X-Pid $pid always;
        }
    }
}

EOF

my $fetch_conf = "$FindBin::Bin/../nginx-conf/gpt_auth_fetch.conf";
$conf =~ s/%%FETCH_CONF%%/$fetch_conf/g;
$conf =~ s/%%PROVIDERS%%/$blocks/;
$conf =~ s/%%NAMES%%/@providers/;
$t->write_file_expand('nginx.conf', $conf);

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';
$t->write_file('secret', "s3cret\n");
$t->write_file('page.html', 'protected page');

my $rsa = new_rsa_key($t->testdir(), 'rsa-1');
my $jwks = jwks_json($rsa);

$idp->serve_discovery($_) for qw( /sdisc /jwks /sjwks /tok );
$idp->serve_discovery('/jdown', jwks_uri => "$DOWN/jwks");
$idp->respond("/$_/jwks", body => $jwks) for qw/ disc sdisc tok /;
$idp->respond('/sdisc/.well-known/openid-configuration', delay => 12,
	body => $idp->discovery_doc('/sdisc'));

$idp->start();
$t->run()->plan(87);

###############################################################################

my $JSON = JSON::PP->new->canonical;
my $page502 = qr{<h1>Sign-in unavailable</h1>\n<p>The identity provider could not be reached or gave an invalid answer};
my $page504 = qr{<p>The identity provider did not answer in time\. Please try again in a moment\.</p>};

my $alice = 'gpt_auth=' . mint_cookie(key => $key, email => 'alice@example.test');

sub login {
	my ($p) = @_;
	return start_login($key, provider => $p, rd => '/home', issuer => "$IDP/$p",
		client_id => "$p-client");
}

sub good_token {
	my ($l) = @_;
	return $JSON->encode({ id_token => sign_jwt($rsa, ok_claims($l)), token_type => 'Bearer' });
}

# one request, what it logged
my sub logged {
	my ($code) = @_;
	my $mark = log_offset($t);
	my $r = $code->();
	return ($r, log_since($t, $mark));
}

sub own_errors {
	my ($log) = @_;
	return scalar(() = $log =~ /^.*\[error\].*gpt_auth:.*$/mg);
}

# a signed-in user's request: "status user pid"
sub session_get {
	my $r = request('/page.html', host => 'auth.example.test', cookie => $alice);
	return join(' ', status($r), header($r, 'X-User') // '-', header($r, 'X-Pid') // '-');
}

my $first = session_get();
like($first, qr/^200 alice\@example\.test \d+$/, 'a signed-in user before any fault');
my ($pid) = $first =~ /(\d+)$/;
my @session_failures;

# check(name, response, log, status, page, why): the page, one error line naming why, no
# session, and a signed-in user served right after by the same worker
sub check {
	my ($name, $r, $log, $status, $page, $why) = @_;
	is(status($r), $status, "$name: $status");
	like(body($r), $page, "$name: error page");
	my @lines = $log =~ /^(.*\[error\].*gpt_auth:.*)$/mg;
	is(scalar(@lines), 1, "$name: one gpt_auth [error] line");
	like($lines[0] // '', $why, "$name: the line says what failed");
	is(scalar(grep { /^gpt_auth=/ } headers($r, 'Set-Cookie')), 0, "$name: no session cookie");
	my $s = session_get();
	push @session_failures, "after $name: $s" unless $s eq "200 alice\@example.test $pid";
}

# a response that ends before its Content-Length: the connection closes mid-body
my @truncated_http = (headers => { 'Content-Length' => 5000 }, framing => 'close');

###############################################################################
# discovery: 500, over the size limit, cut off (down, HTML, 404 and bad documents: callback.t)

my $DISC = "$IDP/disc/.well-known/openid-configuration";

$idp->respond('/disc/.well-known/openid-configuration', status => 500,
	body => '{"error":"internal"}');
my ($r, $log) = logged(sub { login('disc')->{r} });
check('discovery 500', $r, $log, 502, $page502,
	qr/provider "disc": OpenID discovery "\Q$DISC\E" failed: status 500 while/);
is(scalar(() = headers($r, 'Set-Cookie')), 0, 'discovery 500: no state cookie');

# Two sizes over the 64 KB limit (subrequest_output_buffer_size): one that nginx's proxy
# buffers (8 x 16k + 16k) take in at once, and one beyond them.
for my $kb (100, 300) {
	$idp->respond('/disc/.well-known/openid-configuration',
		body => $idp->discovery_doc('/disc', padding => 'x' x ($kb * 1024)));
	($r, $log) = logged(sub { login('disc')->{r} });
	check("discovery of $kb KB", $r, $log, 502, $page502,
		qr/OpenID discovery "\Q$DISC\E" failed: no complete response \(larger than subrequest_output_buffer_size/);
}

$idp->respond('/disc/.well-known/openid-configuration',
	body => substr($idp->discovery_doc('/disc'), 0, 100), @truncated_http);
($r, $log) = logged(sub { login('disc')->{r} });
check('discovery cut off mid-body', $r, $log, 502, $page502,
	qr/OpenID discovery "\Q$DISC\E" failed: response cut off after 100 bytes/);

$idp->serve_discovery('/disc');
is(login('disc')->{status}, 302, 'discovery fixed: the login starts');

###############################################################################
# JWKS: down, truncated JSON, over the size limit, cut off (500, HTML, bad sets: callback.t)

my $lj = login('jwks');
$idp->respond('/jwks/token', body => good_token($lj));
my $JWKS = "$IDP/jwks/jwks";

$idp->respond('/jwks/jwks', body => substr($jwks, 0, int(length($jwks) / 2)));
($r, $log) = logged(sub { callback($lj, code => 'c') });
check('JWKS truncated JSON', $r, $log, 502, $page502,
	qr/provider "jwks": JWKS "\Q$JWKS\E" failed: malformed key set/);
is(scalar(() = headers($r, 'Set-Cookie')), 0, 'JWKS truncated JSON: no cookie');

for my $kb (100, 300) {
	my $big = $JSON->encode({ keys => [ IdToken::jwk($rsa) ], padding => 'x' x ($kb * 1024) });
	$idp->respond('/jwks/jwks', body => $big);
	($r, $log) = logged(sub { callback($lj, code => 'c') });
	check("JWKS of $kb KB", $r, $log, 502, $page502,
		qr/JWKS "\Q$JWKS\E" failed: no complete response \(larger than subrequest_output_buffer_size/);
}

$idp->respond('/jwks/jwks', body => substr($jwks, 0, 100), @truncated_http);
($r, $log) = logged(sub { callback($lj, code => 'c') });
check('JWKS cut off mid-body', $r, $log, 502, $page502,
	qr/JWKS "\Q$JWKS\E" failed: response cut off after 100 bytes/);

$idp->respond('/jwks/jwks', body => $jwks);
is(status(callback($lj, code => 'c')), 302, 'JWKS fixed: the login completes');

my $ljd = login('jdown');
$idp->respond('/jdown/token', body => good_token($ljd));
($r, $log) = logged(sub { callback($ljd, code => 'c') });
check('JWKS endpoint down', $r, $log, 502, $page502,
	qr/provider "jdown": JWKS "\Q$DOWN\E\/jwks" failed: status 502 while/);

###############################################################################
# token endpoint: truncated JSON, cut off (down, slow, 500, HTML, huge: callback.t)

my $TOKEN = "$IDP/tok/token";
my $lt = login('tok');

my $tok = good_token($lt);
$idp->respond('/tok/token', body => substr($tok, 0, length($tok) - 20));
($r, $log) = logged(sub { callback($lt, code => 'c') });
check('token response truncated JSON', $r, $log, 502, $page502,
	qr/provider "tok": token exchange "\Q$TOKEN\E" failed: token response is not a valid JSON object/);

# (1 MB: callback.t)
$idp->respond('/tok/token', body => $JSON->encode({ id_token => $tok, token_type => 'Bearer',
	padding => 'x' x (100 * 1024) }));
($r, $log) = logged(sub { callback($lt, code => 'c') });
check('token response of 100 KB', $r, $log, 502, $page502,
	qr/token exchange "\Q$TOKEN\E" failed: no complete response \(larger than subrequest_output_buffer_size/);

$idp->respond('/tok/token', body => substr($tok, 0, 100), @truncated_http);
($r, $log) = logged(sub { callback($lt, code => 'c') });
check('token response cut off mid-body', $r, $log, 502, $page502,
	qr/token exchange "\Q$TOKEN\E" failed: response cut off after 100 bytes/);

# chunked, closed before the last chunk: a complete-looking JSON document, but not the end
$idp->respond('/tok/token', body => $JSON->encode({ id_token => $tok, token_type => 'Bearer' }),
	framing => 'chunked_cut');
($r, $log) = logged(sub { callback($lt, code => 'c') });
check('chunked token response without its last chunk', $r, $log, 502, $page502,
	qr/token exchange "\Q$TOKEN\E" failed: response cut off after \d+ bytes/);

###############################################################################
# slow beyond proxy_read_timeout (10 s): discovery and JWKS at once, while signed-in users
# keep being served by the same (only) worker

my $ls = login('sjwks');
is($ls->{status}, 302, 'slow JWKS: a login to finish');
$idp->respond('/sjwks/token', body => good_token($ls));
$idp->respond('/sjwks/jwks', body => $jwks, delay => 12);

my $mark = log_offset($t);
my $start = Time::HiRes::time();
my $s_disc = http_start("GET /login?provider=sdisc&rd=%2F HTTP/1.0\r\n"
	. "Host: auth.example.test\r\n\r\n");
my $s_jwks = http_start("GET /callback?code=c&state=$ls->{sid} HTTP/1.0\r\n"
	. "Host: auth.example.test\r\nCookie: $ls->{cookie_name}=$ls->{cookie_value}\r\n\r\n");

my ($n, $slowest, @meanwhile) = (0, 0);
while (Time::HiRes::time() - $start < 9) {
	my $t0 = Time::HiRes::time();
	my $s = session_get();
	my $took = Time::HiRes::time() - $t0;
	$slowest = $took if $took > $slowest;
	$n++;
	push @meanwhile, sprintf('%.1fs: %s', $t0 - $start, $s)
		unless $s eq "200 alice\@example.test $pid";
	Time::HiRes::sleep(0.1);
}
ok($n >= 40, "while both wait: $n requests with a session");
is(join("\n", @meanwhile), '', 'while both wait: every one 200 for alice, by the same worker');
ok($slowest < 0.5, sprintf('while both wait: each answered promptly (slowest %.3fs)', $slowest));

my $rd = $s_disc ? read_reply($s_disc, 30) // '' : '';
my $rj = $s_jwks ? read_reply($s_jwks, 30) // '' : '';
my $elapsed = Time::HiRes::time() - $start;
$log = log_since($t, $mark);

is(status($rd), 504, 'discovery too slow: 504');
like(body($rd), $page504, 'discovery too slow: timeout page');
is(scalar(() = headers($rd, 'Set-Cookie')), 0, 'discovery too slow: no state cookie');
is(status($rj), 504, 'JWKS too slow: 504');
like(body($rj), $page504, 'JWKS too slow: timeout page');
is(scalar(() = headers($rj, 'Set-Cookie')), 0, 'JWKS too slow: no cookie');
ok($elapsed >= 9.5 && $elapsed < 20, sprintf('after the proxy_read_timeout (%.1fs)', $elapsed));
my @lines = $log =~ /^(.*\[error\].*gpt_auth:.*)$/mg;
is(scalar(@lines), 2, 'two gpt_auth [error] lines for the two timeouts');
like($log, qr/\[error\].*gpt_auth: provider "sdisc": OpenID discovery "\Q$IDP\E\/sdisc\/\.well-known\/openid-configuration" failed: timed out/,
	'discovery timeout: logged');
like($log, qr/\[error\].*gpt_auth: provider "sjwks": JWKS "\Q$IDP\E\/sjwks\/jwks" failed: timed out/,
	'JWKS timeout: logged');

###############################################################################
# the worker survived all of it, and signed-in users were served after every fault

is(join("\n", @session_failures), '', 'a signed-in user got 200 after every fault');
is(session_get(), "200 alice\@example.test $pid", 'still the same worker at the end');

$t->stop();
is(join("\n", crash_lines($t->read_file('error.log'))), '', 'no worker crashed');

###############################################################################
