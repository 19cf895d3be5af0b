#!/usr/bin/perl

# gpt_auth: "Sign in with Google" through Google Identity Services. The login page embeds the
# GSI widget with a fresh nonce and sets a state cookie named after it; Google POSTs the
# credential (an ID token) and g_csrf_token to the callback, which checks the double-submit
# cookie, finds the login by the credential's nonce, verifies the token (Google's issuer with
# and without scheme) and signs the user in. Missing or mismatched g_csrf_token, a foreign or
# missing nonce, a code-flow provider's state, bad tokens and oversized bodies are refused.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use FakeIdP;
use IdToken;
use LoginFlow;

use JSON::PP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/);
my $idp = FakeIdP->new($t, 8081);
my $IDP = $idp->url();

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_cookie_secure off;
    gpt_auth_cookie_domain .example.test;
    gpt_auth_login_url /login;
    gpt_auth_logout_url /logout;

    gpt_auth_provider google {
        issuer https://accounts.google.com;
        client_id 1234-abc.apps.googleusercontent.com;
        gsi on;
        jwks_uri http://127.0.0.1:8081/google/jwks;
    }

    gpt_auth_provider corp {
        issuer http://127.0.0.1:8081/corp;
        client_id corp-client;
        client_secret_file %%TESTDIR%%/secret;
    }

    server {
        listen       127.0.0.1:8080;
        server_name  auth.example.test;

        include %%FETCH_CONF%%;

        location = /login {
            gpt_auth_login google corp;
        }

        location = /login-secure {
            gpt_auth_login google;
            gpt_auth_cookie_secure on;
        }

        location = /callback {
            gpt_auth_callback;
            gpt_auth_allowlist %%TESTDIR%%/allow;
        }
    }
}

EOF

my $fetch_conf = "$FindBin::Bin/../nginx-conf/gpt_auth_fetch.conf";
$conf =~ s/%%FETCH_CONF%%/$fetch_conf/g;
$t->write_file_expand('nginx.conf', $conf);

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';
$t->write_file('secret', "s3cret\n");
$t->write_file('allow', "alice\@example.test\n");

my $rsa = new_rsa_key($t->testdir(), 'g-1');
$idp->respond('/google/jwks', body => jwks_json($rsa),
	headers => { 'Cache-Control' => 'public, max-age=20000, must-revalidate' });
$idp->serve_discovery('/corp');

$idp->start();
$t->run()->plan(67);

###############################################################################

my $CLIENT = '1234-abc.apps.googleusercontent.com';
my $rd = 'https://gpt4.example.test/chat';

# The login page as a browser gets it: (response, nonce, cookie name, cookie value)
sub page {
	my ($path) = @_;
	my $r = request(($path // '/login') . '?rd=' . urlencode($rd), host => 'auth.example.test');
	my ($nonce) = body($r) =~ /data-nonce="([^"]*)"/;
	my ($name, $value) = (header($r, 'Set-Cookie') // '') =~ /^([^=]+)=([^;]*)/;
	return ($r, $nonce, $name, $value);
}

sub credential {
	my ($nonce, %over) = @_;
	my $now = time();
	my %c = (iss => 'https://accounts.google.com', aud => $CLIENT, azp => $CLIENT,
		sub => '1097', email => 'alice@example.test', email_verified => JSON::PP::true,
		iat => $now, exp => $now + 3600, nonce => $nonce, name => 'Alice');
	for (keys %over) { if (defined $over{$_}) { $c{$_} = $over{$_} } else { delete $c{$_} } }
	return sign_jwt($rsa, \%c);
}

# post(body => 'raw', or fields: credential, csrf (form), csrf_cookie, state => [name, value])
my sub post {
	my (%a) = @_;
	my $body = $a{body};
	unless (defined $body) {
		my @f;
		push @f, 'credential=' . urlencode($a{credential}) if defined $a{credential};
		push @f, 'g_csrf_token=' . urlencode($a{csrf}) if defined $a{csrf};
		push @f, 'select_by=btn';
		$body = join('&', @f);
	}
	my @cookies;
	push @cookies, "g_csrf_token=$a{csrf_cookie}" if defined $a{csrf_cookie};
	push @cookies, "$a{state}[0]=$a{state}[1]" if $a{state};
	my $mark = log_offset($t);
	my $r = request('/callback', method => 'POST', host => 'auth.example.test', body => $body,
		cookie => @cookies ? join('; ', @cookies) : undef,
		headers => [ 'Content-Type: ' . ($a{json} ? 'application/json; charset=utf-8'
			: 'application/x-www-form-urlencoded') ]);
	return ($r, log_since($t, $mark));
}

# the login page

my ($r, $nonce, $cname, $cvalue) = page();
is(status($r), 200, 'login page: 200');
like($nonce // '', qr/^[A-Za-z0-9_-]{22}$/, 'a 22-character nonce');
like(body($r), qr{<script src="https://accounts\.google\.com/gsi/client" async></script>\n<div id="g_id_onload" data-client_id="\Q$CLIENT\E" data-login_uri="http://auth\.example\.test/callback" data-nonce="\Q$nonce\E" data-ux_mode="redirect" data-auto_prompt="false" data-context="signin"></div>\n<div class="g_id_signin" data-type="standard" data-size="large" data-text="signin_with"></div>\n},
	'GSI script, g_id_onload (client id, callback URL, nonce) and button');
my @buttons = body($r) =~ /(Sign in with [^<]+)</g;
is("@buttons", 'Sign in with Corp', 'a button for the code-flow provider only');
is(scalar(() = headers($r, 'Set-Cookie')), 1, 'one Set-Cookie');
like(header($r, 'Set-Cookie'),
	qr/^gpt_auth_state_\Q$nonce\E=s1\.[A-Za-z0-9_-]{8}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}; Path=\/; Max-Age=600; HttpOnly; SameSite=Lax$/,
	'state cookie named after the nonce; Lax without Secure');
my $st = state_decode($key, $cname, $cvalue, time()) || {};
is_deeply([ @$st{qw/ sid nonce verifier return_url provider /} ],
	[ $nonce, $nonce, '', $rd, 'google' ], 'state: sid = nonce, no verifier, rd, provider');

my (undef, $nonce2) = page();
isnt($nonce2, $nonce, 'each page load has its own nonce');

# a reload that carries the page's state cookie reuses it: cookies do not pile up
my $rr = request('/login?rd=' . urlencode($rd), host => 'auth.example.test',
	cookie => "$cname=$cvalue");
my ($nonce3) = body($rr) =~ /data-nonce="([^"]*)"/;
is($nonce3, $nonce, 'reload with the state cookie: same nonce');
is(scalar(() = headers($rr, 'Set-Cookie')), 0, 'reload with the state cookie: no new cookie');

# logins in progress are capped: with five pending, a new one clears the three oldest
my @jar;
for my $i (1 .. 5) {
	my $ri = request('/login?rd=' . urlencode("$rd?tab=$i"), host => 'auth.example.test');
	my ($pair) = (header($ri, 'Set-Cookie') // '') =~ /^([^;]+)/;
	push @jar, $pair;
}
my $rc = request('/login?rd=' . urlencode("$rd?tab=6"), host => 'auth.example.test',
	cookie => join('; ', @jar));
my @set = headers($rc, 'Set-Cookie');
is(scalar(grep { /^gpt_auth_state_[^=]+=; Path=\/; Max-Age=0;/ } @set), 3,
	'five logins in progress: the three oldest cleared');
is(scalar(grep { /^gpt_auth_state_[^=]+=s1\./ } @set), 1, '... and one new state cookie');

my ($rs) = page('/login-secure');
like(header($rs, 'Set-Cookie') // '', qr/; Path=\/; Max-Age=600; HttpOnly; Secure; SameSite=None$/,
	'with gpt_auth_cookie_secure on: SameSite=None; Secure (cross-site POST)');

# the credential POST

my $cred = credential($nonce);
my $log;
($r, $log) = post(credential => $cred, csrf => 'csrf-1', csrf_cookie => 'csrf-1',
	state => [ $cname, $cvalue ]);
is(status($r), 302, 'credential POST: 302');
is(header($r, 'Location'), $rd, 'back to rd');
my @sc = headers($r, 'Set-Cookie');
is($sc[0], "$cname=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; "
	. 'Expires=Thu, 01 Jan 1970 00:00:00 GMT', 'state cookie cleared');
like($sc[1] // '', qr/^gpt_auth=[^;]+; Path=\/; Domain=\.example\.test; Max-Age=604800; HttpOnly; SameSite=Lax$/,
	'session cookie set');
my ($session) = ($sc[1] // '') =~ /^gpt_auth=([^;]+)/;
my $s = verify_cookie(key => $key, value => $session // '');
is($s && $s->{email}, 'alice@example.test', 'session cookie verifies, for the credential\'s email');

like($log, qr/\[info\].*gpt_auth: login: "alice\@example\.test" signed in via provider "google"/,
	'GSI login logged');
is($idp->count(path => '/google/jwks'), 1, 'keys from jwks_uri');
is($idp->count(path => qr/well-known/), 0, 'no discovery for a GSI provider with jwks_uri');

# the same POST as a JSON object (Google's verification guide shows one), with the same
# double-submit check

my (undef, $nonce_j, $cname_j, $cvalue_j) = page();
($r, $log) = post(json => 1, body => JSON::PP->new->encode({ credential => credential($nonce_j),
	g_csrf_token => 'csrf-j', select_by => 'btn' }), csrf_cookie => 'csrf-j',
	state => [ $cname_j, $cvalue_j ]);
is(status($r) . ' ' . (grep({ /^gpt_auth=[^;]/ } headers($r, 'Set-Cookie')) ? 'session' : '-'),
	'302 session', 'credential POST as JSON: signed in');
(undef, $nonce_j, $cname_j, $cvalue_j) = page();
($r, $log) = post(json => 1, body => JSON::PP->new->encode({ credential => credential($nonce_j),
	g_csrf_token => 'csrf-j' }), csrf_cookie => 'csrf-other', state => [ $cname_j, $cvalue_j ]);
is(status($r), 400, 'JSON with a g_csrf_token that does not match the cookie: 400');
like($log, qr/login refused: g_csrf_token cookie missing or not matching the form/,
	'JSON: the double-submit check refuses it');
($r, $log) = post(json => 1, body => 'credential=x&g_csrf_token=csrf-j', csrf_cookie => 'csrf-j',
	state => [ $cname_j, $cvalue_j ]);
is(status($r), 400, 'a form body sent as JSON: 400');
like($log, qr/login refused: callback POST body is not a form or a JSON object of strings/,
	'logged');

(undef, $nonce, $cname, $cvalue) = page();
($r, $log) = post(credential => credential($nonce, iss => 'accounts.google.com'),
	csrf => 'c2', csrf_cookie => 'c2', state => [ $cname, $cvalue ]);
is(status($r), 302, 'Google\'s issuer without scheme (accounts.google.com): accepted');
is($idp->count(path => '/google/jwks'), 1, 'key set cached (max-age)');

# the double-submit cookie

(undef, $nonce, $cname, $cvalue) = page();
$cred = credential($nonce);
my @state = (state => [ $cname, $cvalue ]);

($r, $log) = post(credential => $cred, csrf_cookie => 'c3', @state);
is(status($r), 400, 'no g_csrf_token field: 400');
like($log, qr/\[info\].*gpt_auth: login refused: callback POST without credential and g_csrf_token/,
	'no g_csrf_token field: logged');

($r, $log) = post(credential => $cred, csrf => 'c3', @state);
is(status($r), 400, 'no g_csrf_token cookie: 400');
like($log, qr/\[info\].*gpt_auth: login refused: g_csrf_token cookie missing or not matching the form/,
	'no g_csrf_token cookie: logged');

($r, $log) = post(credential => $cred, csrf => 'c3', csrf_cookie => 'c4', @state);
is(status($r), 400, 'g_csrf_token mismatch: 400');
like($log, qr/g_csrf_token cookie missing or not matching the form/, 'mismatch: logged');
is(scalar(() = headers($r, 'Set-Cookie')), 0, 'mismatch: no cookie');

($r, $log) = post(credential => $cred, csrf => '', csrf_cookie => '', @state);
is(status($r), 400, 'empty g_csrf_token in both: 400');
like($log, qr/g_csrf_token cookie missing or not matching the form/, 'empty token: logged');

($r, $log) = post(csrf => 'c3', csrf_cookie => 'c3', @state);
is(status($r), 400, 'no credential: 400');
like($log, qr/callback POST without credential and g_csrf_token/, 'no credential: logged');

($r, $log) = post(body => '', csrf_cookie => 'c3', @state);
is(status($r), 400, 'empty body: 400');

# nonces and state cookies

($r, $log) = post(credential => credential('AAAAAAAAAAAAAAAAAAAAAA'), csrf => 'c5',
	csrf_cookie => 'c5', @state);
is(status($r), 400, 'foreign nonce (no login of ours): 400');
like($log, qr/\[info\].*gpt_auth: login refused: no login state cookie for this answer/,
	'foreign nonce: logged');

($r, $log) = post(credential => credential(undef), csrf => 'c5', csrf_cookie => 'c5', @state);
is(status($r), 400, 'credential without nonce: 400');
like($log, qr/\[info\].*gpt_auth: login refused: credential without a nonce from our login page/,
	'no nonce: logged');

($r, $log) = post(credential => credential('short'), csrf => 'c5', csrf_cookie => 'c5', @state);
is(status($r), 400, 'credential with a nonce that is no state id: 400');

($r, $log) = post(credential => $cred, csrf => 'c5', csrf_cookie => 'c5');
is(status($r), 400, 'our nonce but no state cookie (another browser): 400');
like($log, qr/no login state cookie for this answer/, 'no state cookie: logged');

my ($other_page, $other_nonce, $oname, $ovalue) = page();
($r, $log) = post(credential => $cred, csrf => 'c5', csrf_cookie => 'c5',
	state => [ $oname, $ovalue ]);
is(status($r), 400, 'state cookie of another page load: 400');

my $code_login = start_login($key, provider => 'corp', rd => $rd);
($r, $log) = post(credential => credential($code_login->{sid}), csrf => 'c6',
	csrf_cookie => 'c6', state => [ $code_login->{cookie_name}, $code_login->{cookie_value} ]);
is(status($r), 400, 'credential for a code-flow provider\'s login: 400');
like($log, qr/\[info\].*gpt_auth: login refused: provider "corp" does not accept credential POSTs \(gsi off\)/,
	'gsi off: logged');

($r, $log) = post(credential => 'not.a.jwt', csrf => 'c7', csrf_cookie => 'c7', @state);
is(status($r), 401, 'credential not a JWT: 401');
like($log, qr/\[info\].*gpt_auth: login refused: credential malformed token/,
	'malformed credential: logged');

($r, $log) = post(credential => credential($nonce, aud => 'other.apps.googleusercontent.com'),
	csrf => 'c8', csrf_cookie => 'c8', @state);
is(status($r), 401, 'credential for another client: 401');
like($log, qr/login refused: provider "google": ID token audience does not include the client id/,
	'another client: logged');

($r, $log) = post(credential => credential($nonce, iss => 'https://evil.example'),
	csrf => 'c8', csrf_cookie => 'c8', @state);
is(status($r), 401, 'credential from another issuer: 401');

($r, $log) = post(credential => unsigned_jwt({ alg => 'none' },
	{ iss => 'https://accounts.google.com', aud => $CLIENT, nonce => $nonce,
	email => 'alice@example.test', email_verified => JSON::PP::true, sub => '1',
	iat => time(), exp => time() + 600 }), csrf => 'c9', csrf_cookie => 'c9', @state);
is(status($r), 401, 'unsigned credential (alg none): 401');
like($log, qr/ID token unsupported algorithm "none"/, 'alg none: logged');

($r, $log) = post(credential => credential($nonce, email => 'alice@example.test',
	email_verified => JSON::PP::false), csrf => 'c9', csrf_cookie => 'c9', @state);
is(status($r), 403, 'unverified email: 403 (the token is genuine, the address is not verified)');

# bodies too large for the form

($r, $log) = post(credential => credential($nonce, padding => 'x' x 30000),
	csrf => 'c9', csrf_cookie => 'c9', @state);
is(status($r), 400, '30 kB credential (body beyond the memory buffer): 400');
like($log, qr/login refused: callback POST body missing or too large/, '30 kB: logged');

($r, $log) = post(body => 'credential=' . ('x' x (1024 * 1024 + 10)) . '&g_csrf_token=a',
	csrf_cookie => 'a', @state);
is(status($r), 413, '1 MB credential: 413 (client_max_body_size)');

# the allowlist

(undef, $nonce, $cname, $cvalue) = page();
($r, $log) = post(credential => credential($nonce, email => 'bob@example.test'),
	csrf => 'ca', csrf_cookie => 'ca', state => [ $cname, $cvalue ]);
is(status($r), 403, 'GSI user not on the allowlist: 403');
like(body($r), qr{You are signed in as <b>bob\@example\.test</b>}, 'not-allowed page');
ok(!grep({ /^gpt_auth=/ } headers($r, 'Set-Cookie')), 'not allowed: no session cookie');
my ($again) = body($r) =~ m{<a href="([^"]+)">Sign in with another account</a>};
$again //= '';
$again =~ s/&amp;/&/g;
like($again, qr{^/login\?rd=https%3A%2F%2Fgpt4\.example\.test%2Fchat(&|$)},
	'"sign in with another account" link: the login URL with rd');
$r = request($again, host => 'auth.example.test');
like(status($r), qr/^(200|302)$/, 'the "another account" link of a GSI login leads to a login');

# the session works on the protected site's side of the same check

ok(verify_cookie(key => $key, value => $session // ''), 'session from GSI still verifies');

###############################################################################
