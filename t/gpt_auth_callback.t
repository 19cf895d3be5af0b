#!/usr/bin/perl

# gpt_auth: what the callback refuses, and what happens when the provider fails.
# State and state-cookie tampering (missing, malformed, from another browser, transplanted,
# forged, signed with another key, expired, for a provider no longer configured), the issuer
# mix-up parameter, error answers from the provider; token endpoint errors (invalid_grant,
# other 4xx, 5xx, HTML, not JSON, no id_token, connection closed, too large, timeout), an
# unreachable provider, broken discovery documents and key sets: each with its status, its
# page and its one error.log line, and no cookie set. Also: chunked and close-delimited
# answers, an issuer with a trailing slash, a login finished by a worker that never saw it
# start (three fetches in a row), keep-alive after a callback, the worker serving others while
# callbacks wait, a browser that gives up during a fetch, logout without a cookie domain.

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

use JSON::PP;
use MIME::Base64 qw/ encode_base64url /;
use Time::HiRes ();

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/);
my $idp = FakeIdP->new($t, 8081);
my $IDP = $idp->url();
my $DOWN = 'http://127.0.0.1:' . port(8082);	# nothing listens there

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_cookie_secure off;
    gpt_auth_login_url /login;

    gpt_auth_provider corp {
        issuer http://127.0.0.1:8081/corp;
        client_id corp-client;
        client_secret_file %%TESTDIR%%/secret;
    }

    gpt_auth_provider broken {
        issuer http://127.0.0.1:8081/broken;
        client_id broken-client;
        client_secret_file %%TESTDIR%%/secret;
    }

    gpt_auth_provider slow {
        issuer http://127.0.0.1:8081/slow;
        client_id slow-client;
        client_secret_file %%TESTDIR%%/secret;
    }

    gpt_auth_provider down {
        issuer http://127.0.0.1:8082;
        client_id down-client;
        client_secret_file %%TESTDIR%%/secret;
    }

    gpt_auth_provider fresh {
        issuer http://127.0.0.1:8081/fresh;
        client_id fresh-client;
        client_secret_file %%TESTDIR%%/secret;
    }

    gpt_auth_provider deadtoken {
        issuer http://127.0.0.1:8081/deadtoken;
        client_id dt-client;
        client_secret_file %%TESTDIR%%/secret;
    }

    gpt_auth_provider slash {
        issuer http://127.0.0.1:8081/slash/;
        client_id slash-client;
        client_secret_file %%TESTDIR%%/secret;
    }

    gpt_auth_provider gsionly {
        issuer https://accounts.google.com;
        client_id gsi-client;
        gsi on;
        jwks_uri http://127.0.0.1:8081/gsi/jwks;
    }

    server {
        listen       127.0.0.1:8080;
        server_name  auth.example.test;

        include %%FETCH_CONF%%;

        location = /login {
            gpt_auth_login corp broken slow down gsionly slash deadtoken;
        }

        location = /callback {
            gpt_auth_callback;
        }

        location = /logout {
            gpt_auth_logout;
        }

        location / {
            gpt_auth on;
            add_header X-User $gpt_auth_email always;
        }
    }
}

EOF

my $fetch_conf = "$FindBin::Bin/../nginx-conf/gpt_auth_fetch.conf";
$conf =~ s/%%FETCH_CONF%%/$fetch_conf/g;
$t->write_file_expand('nginx.conf', $conf);

my $key = new_key_bytes();
my $other_key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';
$t->write_file('secret', "s3cret\n");
$t->write_file('page.html', 'protected page');

my $rsa = new_rsa_key($t->testdir(), 'rsa-1');
my $jwks = jwks_json($rsa);

$idp->serve_discovery('/corp');
$idp->respond('/corp/jwks', body => $jwks);
$idp->respond('/slash/.well-known/openid-configuration',
	body => $idp->discovery_doc('/slash', issuer => "$IDP/slash/"));
$idp->respond('/slash/jwks', body => $jwks);
$idp->serve_discovery('/fresh');
$idp->serve_discovery('/deadtoken', token_endpoint => "$DOWN/token");
$idp->respond('/fresh/jwks', body => $jwks);
$idp->serve_discovery('/slow');
$idp->respond('/slow/jwks', body => $jwks);
$idp->respond('/slow/token', delay => 12, body => '{}');

# nginx's own lines about the failing upstreams are errors, not alerts; nothing to skip

$idp->start();
$t->run()->plan(137);

###############################################################################

my $JSON = JSON::PP->new->canonical;
my %P = (
	corp => { issuer => "$IDP/corp", client_id => 'corp-client' },
	broken => { issuer => "$IDP/broken", client_id => 'broken-client' },
	slow => { issuer => "$IDP/slow", client_id => 'slow-client' },
	slash => { issuer => "$IDP/slash/", client_id => 'slash-client' },
	deadtoken => { issuer => "$IDP/deadtoken", client_id => 'dt-client' },
	down => { issuer => $DOWN, client_id => 'down-client' },
);

sub login {
	my ($provider, %a) = @_;
	return start_login($key, provider => $provider, rd => '/home', %{ $P{$provider} }, %a);
}

sub good_token {
	my ($l, %claims) = @_;
	return $JSON->encode({ id_token => sign_jwt($rsa, ok_claims($l, %claims)),
		token_type => 'Bearer' });
}

# one request, its log lines: ($response, $log)
my sub logged {
	my ($code) = @_;
	my $mark = log_offset($t);
	my $r = $code->();
	return ($r, log_since($t, $mark));
}

sub own_errors {
	my ($log) = @_;
	return scalar(() = $log =~ /\[error\].*gpt_auth:/g);
}

my ($r, $log);
my $l = login('corp');
is($l->{status}, 302, 'a login to tamper with');

# the state parameter

($r, $log) = logged(sub { callback($l, query => 'code=abc') });
is(status($r), 400, 'no state: 400');
like(body($r), qr{<h1>Sign-in expired</h1>}, 'no state: sign-in expired page');
like($log, qr/\[info\].*gpt_auth: login refused: callback without a valid state parameter/,
	'no state: logged');
is(scalar(() = headers($r, 'Set-Cookie')), 0, 'no state: no cookie');

($r, $log) = logged(sub { callback($l, code => 'abc', state => 'abc') });
is(status($r), 400, 'short state: 400');
like($log, qr/callback without a valid state parameter/, 'short state: logged');

($r, $log) = logged(sub { callback($l, code => 'abc', state => substr($l->{sid}, 0, 21) . '+') });
is(status($r), 400, 'state with a non-base64url character: 400');
like($log, qr/callback without a valid state parameter/, 'non-base64url state: logged as such');

($r, $log) = logged(sub { callback($l, code => 'abc', state => 'AAAAAAAAAAAAAAAAAAAAAB') });
is(status($r), 400, 'non-canonical state (22 chars, not 16 bytes): 400');
like($log, qr/callback without a valid state parameter/, 'non-canonical state: logged');

# the state cookie

($r, $log) = logged(sub { callback($l, code => 'abc', no_cookie => 1) });
is(status($r), 400, 'no state cookie (another browser): 400');
like(body($r), qr{was started in another browser}, 'no state cookie: explained');
like($log, qr/\[info\].*gpt_auth: login refused: no login state cookie for this answer \(expired, used, or another browser\)/,
	'no state cookie: logged');

my $l2 = login('corp');
($r, $log) = logged(sub { callback($l, code => 'abc', state => $l2->{sid}) });
is(status($r), 400, 'state of another login than the cookie: 400');
like($log, qr/no login state cookie for this answer/, 'state of another login: logged');

($r, $log) = logged(sub { callback($l2, code => 'abc',
	cookie => "$l2->{cookie_name}=$l->{cookie_value}") });
is(status($r), 400, 'cookie value moved to another login\'s name: 400');
like($log, qr/\[info\].*gpt_auth: login refused: bad state cookie signature/,
	'transplanted cookie: bad signature');

my $forged = state_encode($key, $l->{cookie_name},
	{ %{ $l->{state} }, return_url => 'https://evil.example/' });
my @f = split /\./, $forged;
my @o = split /\./, $l->{cookie_value};
($r, $log) = logged(sub { callback($l, code => 'abc',
	cookie => "$l->{cookie_name}=$o[0].$o[1].$f[2].$o[3]") });
is(status($r), 400, 'payload changed, signature kept: 400');
like($log, qr/login refused: bad state cookie signature/, 'changed payload: bad signature');

($r, $log) = logged(sub { callback($l, code => 'abc', cookie => "$l->{cookie_name}="
	. state_encode($other_key, $l->{cookie_name}, $l->{state})) });
is(status($r), 400, 'state cookie signed with another key: 400');
like($log, qr/login refused: state cookie signed with an unknown key/,
	'another key: unknown key');

my $v = state_encode($other_key, $l->{cookie_name}, $l->{state});
$v =~ s/^s1\.[^.]+\./s1.${\ key_id($key)}./;
($r, $log) = logged(sub { callback($l, code => 'abc', cookie => "$l->{cookie_name}=$v") });
is(status($r), 400, 'another key under our key id: 400');
like($log, qr/login refused: bad state cookie signature/, 'our key id, other key: bad signature');

($r, $log) = logged(sub { callback($l, code => 'abc', cookie => "$l->{cookie_name}="
	. state_encode($key, $l->{cookie_name}, { %{ $l->{state} }, exp => time() - 30 })) });
is(status($r), 400, 'expired state cookie: 400');
like($log, qr/\[info\].*gpt_auth: login refused: login state expired \d+s ago/,
	'expired state cookie: logged');

($r, $log) = logged(sub { callback($l, code => 'abc', cookie => "$l->{cookie_name}="
	. mint_cookie(key => $key, email => 'alice@example.test', name => $l->{cookie_name})) });
is(status($r), 400, 'a session cookie as state cookie: 400');
like($log, qr/login refused: unsupported state cookie version/, 'session cookie: wrong version');

($r, $log) = logged(sub { callback($l, code => 'abc',
	cookie => "$l->{cookie_name}=" . substr($l->{cookie_value}, 0, 60)) });
is(status($r), 400, 'truncated state cookie: 400');
like($log, qr/login refused: malformed state cookie/, 'truncated: malformed');

($r, $log) = logged(sub { callback($l, code => 'abc', cookie => "$l->{cookie_name}="
	. state_encode($key, $l->{cookie_name}, { %{ $l->{state} }, provider => 'gone' })) });
is(status($r), 400, 'provider no longer configured: 400');
like($log, qr/\[info\].*gpt_auth: login refused: provider "gone" is no longer configured/,
	'provider no longer configured: logged');

# a GSI login page's state cookie (named after the nonce) used for a code callback
$r = request('/login', host => 'auth.example.test');
my ($gname, $gsid, $gval) = (header($r, 'Set-Cookie') // '') =~ /^(gpt_auth_state_([^=]+))=([^;]+)/;
ok(defined $gsid, 'the GSI login page set its state cookie');
($r, $log) = logged(sub { callback($l, code => 'abc', state => $gsid // '',
	cookie => "$gname=$gval") });
is(status($r), 400, 'code callback for a GSI-only provider: 400');
like($log, qr/\[info\].*gpt_auth: login refused: a code for provider "\w+", which has no code flow/,
	'code callback for a GSI-only provider: logged as such');

is(scalar(() = $idp->requests(path => '/corp/token')), 0,
	'no refused callback reached the token endpoint');

# the authorization response

($r, $log) = logged(sub { callback($l, code => 'abc', iss => 'https://evil.example') });
is(status($r), 400, 'iss parameter of another issuer (mix-up): 400');
like($log, qr/\[info\].*gpt_auth: login refused: answer from issuer "https:\/\/evil\.example", expected "\Q$IDP\E\/corp"/,
	'mix-up: logged');

$idp->authorize_iss('/corp', "$IDP/corp");
my $back = authorize_at_idp($l);
is($back->{iss}, "$IDP/corp", 'provider sends iss (RFC 9207)');
$idp->respond('/corp/token', body => good_token($l));
$r = callback($l, code => $back->{code}, iss => $back->{iss});
is(status($r), 302, 'iss of the configured issuer: login completes');
is(header($r, 'Location'), 'http://auth.example.test:' . port(8080) . '/home',
	'... back to rd (a path; nginx makes it absolute)');
like((grep { /^gpt_auth=/ } headers($r, 'Set-Cookie'))[0] // '',
	qr/^gpt_auth=[^;]+; Path=\/; Max-Age=604800; HttpOnly; SameSite=Lax$/,
	'no gpt_auth_cookie_domain: host-only session cookie');

$r = request('/logout', host => 'auth.example.test');
is(join("\n", headers($r, 'Set-Cookie')), 'gpt_auth=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; '
	. 'Expires=Thu, 01 Jan 1970 00:00:00 GMT', 'logout without a cookie domain: one clear');
is(header($r, 'Location'), 'http://auth.example.test:' . port(8080) . '/login',
	'logout: to the login URL (a path)');
$idp->authorize_iss('/corp', undef);

($r, $log) = logged(sub { callback($l) });
is(status($r), 400, 'no code: 400');
like(body($r), qr{<h1>Bad request</h1>}, 'no code: bad request page');
like($log, qr/\[info\].*gpt_auth: login refused: callback without a code/, 'no code: logged');

is(status(callback($l, code => '')), 400, 'empty code: 400');

($r, $log) = logged(sub { callback($l, query => 'error=access_denied&error_description='
	. urlencode("User said no\r\nX-Evil: 1") . "&state=$l->{sid}") });
is(status($r), 403, 'error=access_denied: 403');
like(body($r), qr{<h1>Sign-in cancelled</h1>}, 'access_denied: cancelled page');
like($log, qr/\[info\].*gpt_auth: login refused by the provider: "access_denied" User said no\?\?X-Evil: 1/,
	'access_denied: logged, control characters replaced');
is(header($r, 'X-Evil'), undef, 'error_description not reflected into a header');

($r, $log) = logged(sub { callback($l, query => 'error=server_error&state=' . $l->{sid}) });
is(status($r), 400, 'other error: 400');
like($log, qr/login refused by the provider: "server_error"/, 'other error: logged');

is(status(request('/callback?code=a&state=' . $l->{sid}, host => 'auth.example.test',
	method => 'PUT', body => 'x')), 405, 'PUT /callback: 405');

# token endpoint errors

my sub token_error {
	my (%resp) = @_;
	my $lt = login('corp');
	$idp->respond('/corp/token', %resp);
	return logged(sub { callback($lt, code => 'code-1') });
}

my $TOKEN_URL = "$IDP/corp/token";
my $page502 = qr{<h1>Sign-in unavailable</h1>\n<p>The identity provider could not be reached or gave an invalid answer};

($r, $log) = token_error(status => 400,
	body => '{"error":"invalid_grant","error_description":"Code expired"}');
is(status($r), 400, 'invalid_grant: 400');
like(body($r), qr{<h1>Sign-in expired</h1>}, 'invalid_grant: sign-in expired page');
like($log, qr/\[info\].*gpt_auth: login refused: provider "corp": code rejected: invalid_grant \(Code expired\)/,
	'invalid_grant: logged at info');
is(own_errors($log), 0, 'invalid_grant: not an [error]');

($r, $log) = token_error(status => 401,
	body => '{"error":"invalid_client","error_description":"bad secret"}');
is(status($r), 502, 'invalid_client (401): 502');
like(body($r), $page502, 'invalid_client: provider error page');
like($log, qr/\[error\].*gpt_auth: provider "corp": token exchange "\Q$TOKEN_URL\E" failed: status 401: invalid_client \(bad secret\)/,
	'invalid_client: logged');
is(own_errors($log), 1, 'invalid_client: one error line');

($r, $log) = token_error(status => 403, body => '<html>Forbidden</html>',
	headers => { 'Content-Type' => 'text/html' });
is(status($r), 502, '403 with an HTML body: 502');
like($log, qr/token exchange "\Q$TOKEN_URL\E" failed: status 403 while/, '403: logged');

($r, $log) = token_error(status => 500, body => '{"error":"server_error"}');
is(status($r), 502, '500: 502');
like($log, qr/\[error\].*gpt_auth: provider "corp": token exchange "\Q$TOKEN_URL\E" failed: status 500 while/,
	'500: logged');
is(own_errors($log), 1, '500: one error line');

($r, $log) = token_error(status => 200, body => "<!DOCTYPE html>\n<html><body>Login</body></html>",
	headers => { 'Content-Type' => 'text/html' });
is(status($r), 502, 'HTML page with 200: 502');
like($log, qr/token exchange "\Q$TOKEN_URL\E" failed: token response is an HTML page, not JSON/,
	'HTML: logged');

($r, $log) = token_error(status => 200, body => 'id_token=abc&token_type=Bearer',
	headers => { 'Content-Type' => 'application/x-www-form-urlencoded' });
is(status($r), 502, 'not JSON: 502');
like($log, qr/failed: token response is not a valid JSON object/, 'not JSON: logged');

($r, $log) = token_error(status => 200, body => '{"access_token":"at","token_type":"Bearer"}');
is(status($r), 502, 'no id_token: 502');
like($log, qr/failed: token response has no id_token \(is the openid scope requested\?\)/,
	'no id_token: logged');

($r, $log) = token_error(status => 200, body => '{"id_token":42}');
is(status($r), 502, 'id_token not a string: 502');
like($log, qr/failed: token response id_token has the wrong type/, 'id_token type: logged');

($r, $log) = token_error(status => 200, body => '{"error":"temporarily_unavailable"}');
is(status($r), 502, 'error member with 200: 502');
like($log, qr/failed: provider error "temporarily_unavailable"/, 'error member with 200: logged');

($r, $log) = token_error(close => 1);
is(status($r), 502, 'connection closed without an answer: 502');
like($log, qr/\[error\].*gpt_auth: provider "corp": token exchange "\Q$TOKEN_URL\E" failed: status 502/,
	'closed connection: logged');
is(own_errors($log), 1, 'closed connection: one error line of the module');

($r, $log) = token_error(status => 302, body => '', headers => { Location => 'https://x.example/' });
is(status($r), 502, 'redirect from the token endpoint: 502');
like($log, qr/failed: status 302/, 'redirect: logged');

($r, $log) = token_error(status => 200, body => $JSON->encode({ token_type => 'Bearer',
	id_token => 'x' x (1024 * 1024) }));
is(status($r), 502, '1 MB token response (over subrequest_output_buffer_size): 502');
like($log, qr/\[error\].*gpt_auth: provider "corp": token exchange "\Q$TOKEN_URL\E" failed: no complete response \(larger than subrequest_output_buffer_size/,
	'1 MB token response: logged as too large');
is(scalar(() = headers($r, 'Set-Cookie')), 0, '1 MB token response: no cookie');

# answers framed with chunked transfer encoding, or ended by closing the connection

for my $framing (qw/ chunked close /) {
	my $lc = login('corp');
	$idp->respond('/corp/token', body => good_token($lc), framing => $framing);
	$r = callback($lc, code => 'c');
	is(status($r), 302, "token response framed by $framing: login completes");
}

# the fetch location is internal: clients cannot use it

$r = request('/_gpt_auth_fetch', host => 'auth.example.test');
is(status($r), 404, 'GET /_gpt_auth_fetch from a client: 404 (internal)');
is(scalar(() = $idp->requests(path => qr/^\/(?!corp|broken|slow|fresh|slash|deadtoken)/)), 0,
	'nothing unexpected reached the provider');

# an issuer with a trailing slash (e.g. Auth0: "https://TENANT.auth0.com/"): the discovery
# document is at <issuer without the slash>/.well-known/openid-configuration, and both the
# document's issuer and the ID token's iss are the issuer with its slash (Discovery 4.1, 4.3)

my $lsl;
($r, $log) = logged(sub { $lsl = login('slash'); $lsl->{r} });
is($idp->count(path => '/slash/.well-known/openid-configuration'), 1,
	'issuer with a trailing slash: discovery at <issuer>.well-known/openid-configuration');
is(status($r), 302, 'issuer with a trailing slash: its discovery document is accepted');
unlike($log, qr/\[error\].*gpt_auth/, 'issuer with a trailing slash: no error');
$idp->respond('/slash/token', body => good_token($lsl));
is(status(callback($lsl, code => 'c')), 302,
	'issuer with a trailing slash: ID token with iss "<issuer>/" accepted');

# an unreachable provider

my $ld;
($r, $log) = logged(sub { $ld = login('down'); $ld->{r} });
is(status($r), 502, 'unreachable provider, login: 502');
like(body($r), $page502, 'unreachable provider: provider error page');
like($log, qr/\[error\].*gpt_auth: provider "down": OpenID discovery "\Q$DOWN\E\/\.well-known\/openid-configuration" failed: status 502/,
	'unreachable provider: logged');
is(own_errors($log), 1, 'unreachable provider: one error line of the module');
is(scalar(() = headers($r, 'Set-Cookie')), 0, 'unreachable provider: no state cookie');

my $ldt = login('deadtoken');
($r, $log) = logged(sub { callback($ldt, code => 'c') });
is(status($r), 502, 'token endpoint unreachable: 502');
like($log, qr/\[error\].*gpt_auth: provider "deadtoken": token exchange "\Q$DOWN\E\/token" failed: status 502/,
	'token endpoint unreachable: logged');

my $alice = mint_cookie(key => $key, email => 'alice@example.test');
$r = request('/page.html', host => 'auth.example.test', cookie => "gpt_auth=$alice");
is(status($r) . ' ' . (header($r, 'X-User') // ''), '200 alice@example.test',
	'signed-in users keep working while the provider is down');

# broken discovery documents: each failure logged, nothing cached

my $DISC = "$IDP/broken/.well-known/openid-configuration";
my @disc_cases = (
	[ 'HTML page', { body => '<html><body>Sign in</body></html>',
		headers => { 'Content-Type' => 'text/html' } },
		qr/document is an HTML page, not JSON/ ],
	[ 'not JSON', { body => '{"issuer": ' }, qr/document is not a valid JSON object/ ],
	[ 'issuer mismatch', { body => $idp->discovery_doc('/broken',
		issuer => 'https://evil.example') },
		qr/document is for issuer "https:\/\/evil\.example", not the configured one/ ],
	[ 'no authorization_endpoint', { body => $idp->discovery_doc('/broken',
		authorization_endpoint => undef) }, qr/no authorization_endpoint/ ],
	[ 'jwks_uri not a URL', { body => $idp->discovery_doc('/broken',
		jwks_uri => 'javascript:alert(1)') },
		qr/jwks_uri is not an absolute http\(s\) URL without fragment/ ],
	[ '404', { status => 404, body => '{"error":"not_found"}' }, qr/status 404 while/ ],
);
for my $c (@disc_cases) {
	my ($name, $resp, $why) = @$c;
	$idp->respond('/broken/.well-known/openid-configuration', %$resp);
	($r, $log) = logged(sub { login('broken')->{r} });
	is(status($r), 502, "discovery $name: 502");
	like($log, qr/\[error\].*gpt_auth: provider "broken": OpenID discovery "\Q$DISC\E" failed: $why/,
		"discovery $name: logged");
}
$idp->serve_discovery('/broken');
my $lb = login('broken');
is($lb->{status}, 302, 'discovery fixed: login works');
is($idp->count(path => '/broken/.well-known/openid-configuration'), scalar(@disc_cases) + 1,
	'failed discovery documents are not cached');

# broken key sets

my $JWKS = "$IDP/broken/jwks";
$idp->respond('/broken/token', body => good_token($lb));
my @jwks_cases = (
	[ 'HTML page', { body => '<html>keys</html>', headers => { 'Content-Type' => 'text/html' } },
		qr/malformed key set \(not a JSON object\)/ ],
	[ 'no keys array', { body => '{"keys":{}}' }, qr/malformed key set \(no "keys" array\)/ ],
	[ 'no usable key', { body => '{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}' },
		qr/key set has no usable signing key \(1 skipped\)/ ],
	[ '500', { status => 500, body => 'oops' }, qr/status 500 while/ ],
);
for my $c (@jwks_cases) {
	my ($name, $resp, $why) = @$c;
	$idp->respond('/broken/jwks', %$resp);
	($r, $log) = logged(sub { callback($lb, code => 'c') });
	is(status($r), 502, "JWKS $name: 502");
	like($log, qr/\[error\].*gpt_auth: provider "broken": JWKS "\Q$JWKS\E" failed: $why/,
		"JWKS $name: logged");
}
$idp->respond('/broken/jwks', body => $jwks);
is(status(callback($lb, code => 'c')), 302, 'key set fixed: login works');
is($idp->count(path => '/broken/jwks'), scalar(@jwks_cases) + 1, 'failed key sets are not cached');

# a login finished by a worker that never saw it start (another machine sharing the key file,
# or after a restart): discovery, token exchange and key set fetched one after the other by
# the callback request

sub b64u16 {
	open(my $fh, '<:raw', '/dev/urandom') or die;
	read($fh, my $b, 16);
	close $fh;
	return encode_base64url($b);
}

my %fresh = (sid => b64u16(), nonce => b64u16(), verifier => 'v' x 43,
	return_url => '/fresh-home', provider => 'fresh', exp => time() + 300);
my $lf = { sid => $fresh{sid}, cookie_name => "gpt_auth_state_$fresh{sid}",
	host => 'auth.example.test', state => \%fresh, issuer => "$IDP/fresh",
	client_id => 'fresh-client' };
$lf->{cookie_value} = state_encode($key, $lf->{cookie_name}, \%fresh);
$idp->respond('/fresh/token', body => good_token($lf));
$r = callback($lf, code => 'c');
is(status($r), 302, 'state cookie minted by the suite, provider never contacted: login completes');
is(join(' ', map { $_->{method} . ' ' . $_->{path} } $idp->requests(path => qr{^/fresh/})),
	'GET /fresh/.well-known/openid-configuration POST /fresh/token GET /fresh/jwks',
	'discovery, token exchange, key set: in order, once each');
is(FakeIdP::form_decode($idp->last_request(path => '/fresh/token')->{body})->{code_verifier},
	'v' x 43, 'the verifier of the state cookie is sent');

# keep-alive: a callback with fetches, then another request on the same connection

$lf->{cookie_value} = state_encode($key, $lf->{cookie_name}, \%fresh);
my $ka = http("GET /callback?code=c&state=$fresh{sid} HTTP/1.1\r\nHost: auth.example.test\r\n"
	. "Cookie: $lf->{cookie_name}=$lf->{cookie_value}\r\n\r\n"
	. "GET /login HTTP/1.1\r\nHost: auth.example.test\r\nConnection: close\r\n\r\n") // '';
is(join(' ', $ka =~ m{^HTTP/1\.1 (\d{3})}mg), '302 200',
	'keep-alive: callback then the next request on the same connection');

# a provider that does not answer in time (the snippet's proxy_read_timeout is 10s), while
# the worker keeps serving others; a browser that gives up meanwhile

my $ls = login('slow');
my $gone = login('slow');
my $s_gone = http_start("GET /callback?code=c&state=$gone->{sid} HTTP/1.0\r\n"
	. "Host: auth.example.test\r\nCookie: $gone->{cookie_name}=$gone->{cookie_value}\r\n\r\n");
close $s_gone if $s_gone;

my $mark = log_offset($t);
my $start = Time::HiRes::time();
my $s_slow = http_start("GET /callback?code=c&state=$ls->{sid} HTTP/1.0\r\n"
	. "Host: auth.example.test\r\nCookie: $ls->{cookie_name}=$ls->{cookie_value}\r\n\r\n");

Time::HiRes::sleep(0.5);
my $t0 = Time::HiRes::time();
my $other = login('corp');
is($other->{status}, 302, 'while two callbacks wait for the provider, other logins work');
ok(Time::HiRes::time() - $t0 < 2, '... without waiting for them (the worker is not blocked)');

$r = $s_slow ? read_reply($s_slow, 30) // '' : '';
$log = log_since($t, $mark);
is(status($r), 504, 'token endpoint too slow: 504');
like(body($r), qr{<p>The identity provider did not answer in time\. Please try again in a moment\.</p>},
	'timeout: page');
like($log, qr/\[error\].*gpt_auth: provider "slow": token exchange "\Q$IDP\E\/slow\/token" failed: timed out/,
	'timeout: logged');
ok(Time::HiRes::time() - $start >= 9.5, 'after the proxy_read_timeout');
is(status(request('/login', host => 'auth.example.test')), 200,
	'nginx still answers after the abandoned callback timed out');

###############################################################################
