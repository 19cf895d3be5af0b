#!/usr/bin/perl

# gpt_auth: the login flow with an OpenID provider (a fake one in Perl, t/lib/FakeIdP.pm).
# The login page; the authorization redirect and every parameter of it, the PKCE challenge
# against the verifier in the state cookie; a full login through the provider's authorization
# endpoint, the callback, the token exchange (client_secret_basic and client_secret_post) and
# the session cookie it sets (checked with the suite's own codec); discovery and JWKS caching;
# explicit endpoints without discovery; several logins at once; the callback's allowlist; a
# replayed and an injected code; logout; the page templates.

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

use Digest::SHA qw/ sha256 /;
use MIME::Base64 qw/ encode_base64 encode_base64url /;

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
    gpt_auth_login_url http://auth.example.test/login;
    gpt_auth_logout_url /logout;

    gpt_auth_provider corp {
        issuer http://127.0.0.1:8081/corp;
        client_id "corp client";
        client_secret_file %%TESTDIR%%/corp.secret;
        display_name "Corp SSO";
        scope openid email profile;
        extra_auth_args "access_type=online&ui_locales=de";
    }

    gpt_auth_provider post {
        issuer http://127.0.0.1:8081/post;
        client_id post-client;
        client_secret_file %%TESTDIR%%/post.secret;
        token_endpoint_auth client_secret_post;
    }

    gpt_auth_provider ovr {
        issuer http://127.0.0.1:8081/ovr;
        client_id ovr-client;
        client_secret_file %%TESTDIR%%/post.secret;
        authorization_endpoint http://127.0.0.1:8081/ovr/authz?tenant=t1;
        token_endpoint http://127.0.0.1:8081/ovr/tok;
        jwks_uri http://127.0.0.1:8081/ovr/keys;
        redirect_uri http://auth.example.test/cb2;
    }

    gpt_auth_provider html {
        issuer http://127.0.0.1:8081/html;
        authorization_endpoint http://127.0.0.1:8081/html/authorize;
        client_id "<client>";
        client_secret_file %%TESTDIR%%/post.secret;
        display_name "<script>alert('x')</script> & Co";
    }

    gpt_auth_provider google {
        issuer https://accounts.google.com;
        authorization_endpoint http://127.0.0.1:8081/google/auth;
        client_id google-client;
        client_secret_file %%TESTDIR%%/post.secret;
    }

    server {
        listen       127.0.0.1:8080;
        server_name  auth.example.test;

        include %%FETCH_CONF%%;

        location = /login {
            gpt_auth_login corp post ovr;
        }

        location = /callback {
            gpt_auth_callback;
            gpt_auth_allowlist %%TESTDIR%%/allow;
        }

        location = /cb2 {
            gpt_auth_callback;
        }

        location = /logout {
            gpt_auth_logout;
        }

        location = /login-html {
            gpt_auth_login html google;
        }

        location = /login-tpl {
            gpt_auth_login corp;
            gpt_auth_login_page %%TESTDIR%%/login.tpl;
        }

        location = /callback-tpl {
            gpt_auth_callback;
            gpt_auth_allowlist %%TESTDIR%%/allow;
            gpt_auth_not_allowed_page %%TESTDIR%%/not_allowed.tpl;
            gpt_auth_error_page %%TESTDIR%%/error.tpl;
            gpt_auth_logout_url off;
        }
    }

    server {
        listen       127.0.0.1:8080;
        server_name  custom.example.test;

        gpt_auth_cookie_name sess;
        gpt_auth_cookie_domain off;
        gpt_auth_cookie_path /app;
        gpt_auth_cookie_max_age 1h;
        gpt_auth_cookie_samesite strict;
        gpt_auth_cookie_secure on;

        include %%FETCH_CONF%%;

        location = /login {
            gpt_auth_login corp;
        }

        location = /callback {
            gpt_auth_callback;
        }
    }

    server {
        listen       127.0.0.1:8080;
        server_name  gpt4.example.test;

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
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';
my $corp_secret = 'pa:ss/wo+rd%';
$t->write_file('corp.secret', "$corp_secret\n");
$t->write_file('post.secret', "post secret\n");
$t->write_file('allow', "alice\@example.test\n# bob is not here\ncarol\@example.test\n");
$t->write_file('page.html', 'protected page');
$t->write_file('login.tpl', "<title>Custom</title>\n[{{ providers }}]\n[{{signed_in}}]\n"
	. "[{{return_url}}]\n[{{unknown}}]\n");
$t->write_file('not_allowed.tpl',
	"NA email={{email}} logout={{logout_url}} login={{login_url}}\n{{actions}}\n");
$t->write_file('error.tpl', "ERR {{status}} / {{title}} / {{message}} / {{login_url}}\n");

# keys and provider documents

my $rsa = new_rsa_key($t->testdir(), 'rsa-1');
my $jwks = jwks_json($rsa);

for my $p (qw/ corp post /) {
	$idp->serve_discovery("/$p");
	$idp->respond("/$p/jwks", body => $jwks);
}
$idp->respond('/ovr/.well-known/openid-configuration', status => 500, body => 'not used');
$idp->respond('/ovr/keys', body => $jwks);

my %P = (
	corp => { issuer => "$IDP/corp", client_id => 'corp client' },
	post => { issuer => "$IDP/post", client_id => 'post-client' },
	ovr => { issuer => "$IDP/ovr", client_id => 'ovr-client' },
);

$idp->start();
$t->run()->plan(125);

###############################################################################

my $rd = 'https://gpt4.example.test/chat?x=1';

sub login {
	my ($provider, %a) = @_;
	return start_login($key, provider => $provider, rd => $a{rd} // $rd,
		%{ $P{$provider} }, %a);
}

my %CLIENT = (
	corp => [ 'corp client', $corp_secret, 'client_secret_basic' ],
	post => [ 'post-client', 'post secret', 'client_secret_post' ],
);

# An ID token for this login, served by the provider's token endpoint ($path) with a check of
# the code, redirect_uri, PKCE verifier and client credentials.
my sub token_for {
	my ($l, $path, %claims) = @_;
	my $tok = sign_jwt($rsa, ok_claims($l, %claims));
	$idp->respond($path, body => JSON::PP->new->encode({
		access_token => 'at-' . $l->{sid}, token_type => 'Bearer', expires_in => 3600,
		id_token => $tok }), check => 1, client => $CLIENT{$l->{provider}});
	return $tok;
}

# A whole login through the provider; returns (login, callback response).
my sub full_login {
	my ($provider, %a) = @_;
	my $l = login($provider, %a);
	token_for($l, "/$provider/token", %{ $a{claims} // {} });
	my $back = authorize_at_idp($l);
	return ($l, callback($l, code => $back->{code}, state => $back->{state}));
}

# the login page

my $r = request('/login?rd=' . urlencode($rd), host => 'auth.example.test',
	cookie => 'unrelated=1');
is(status($r), 200, 'login page: 200');
is(header($r, 'Content-Type'), 'text/html; charset=utf-8', 'login page: html');
is(header($r, 'Cache-Control'), 'no-store', 'login page: not cached');
my $b = body($r);
my @links = $b =~ m{(<a class="button" href="[^"]*">[^<]*</a>)}g;
is_deeply(\@links, [
	'<a class="button" href="?provider=corp&amp;rd=https%3A%2F%2Fgpt4.example.test%2Fchat%3Fx%3D1">'
		. 'Sign in with Corp SSO</a>',
	'<a class="button" href="?provider=post&amp;rd=https%3A%2F%2Fgpt4.example.test%2Fchat%3Fx%3D1">'
		. 'Sign in with Post</a>',
	'<a class="button" href="?provider=ovr&amp;rd=https%3A%2F%2Fgpt4.example.test%2Fchat%3Fx%3D1">'
		. 'Sign in with Ovr</a>',
], 'one button per provider, in order, display names, rd kept');
is(scalar(() = headers($r, 'Set-Cookie')), 0, 'login page without GSI sets no cookie');
unlike($b, qr/signed in as|g_id_onload/, 'no "signed in" line, no GSI widget');

$r = request('/login', host => 'auth.example.test');
like(body($r), qr{href="\?provider=corp&amp;rd=%2F"}, 'no rd: return to /');

my $alice = mint_cookie(key => $key, email => 'alice@example.test');
$r = request('/login?rd=' . urlencode($rd), host => 'auth.example.test',
	cookie => "gpt_auth=$alice");
like(body($r), qr{<p>You are signed in as <b>alice\@example\.test</b>\. <a href="https://gpt4\.example\.test/chat\?x=1">Continue</a></p>},
	'login page with a session names the user and links to rd');

like(body(request('/login-html', host => 'auth.example.test')),
	qr{<a class="button" href="\?provider=html&amp;rd=%2F">Sign in with &lt;script&gt;alert\(&#39;x&#39;\)&lt;/script&gt; &amp; Co</a>},
	'display name HTML-escaped');

is(status(request('/login', host => 'auth.example.test', method => 'POST', body => 'a=1')), 405,
	'POST /login: 405');

my $mark = log_offset($t);
$r = request('/login?provider=nope', host => 'auth.example.test');
is(status($r), 400, 'unknown provider: 400');
like(body($r), qr{<h1>Bad request</h1>}, 'unknown provider: bad request page');
like(log_since($t, $mark), qr/\[info\].*gpt_auth: login refused: unknown provider "nope"/,
	'unknown provider: logged');

# the authorization redirect

$mark = log_offset($t);
my $l = login('corp', cookie => 'browser_secret=do-not-forward');
is($l->{status}, 302, 'login with provider: 302');
like($l->{location}, qr{^\Q$IDP\E/corp/authorize\?response_type=code&},
	'to the authorization endpoint from discovery');
my $q = $l->{auth};
is_deeply($q->{''}, [qw/ response_type client_id redirect_uri scope state nonce code_challenge
	code_challenge_method access_type ui_locales /], 'exactly these parameters, in order');
is($q->{response_type}, 'code', 'response_type=code');
is($q->{client_id}, 'corp client', 'client_id');
like($l->{location}, qr/[?&]client_id=corp%20client&/, 'client_id percent-encoded');
is($q->{redirect_uri}, 'http://auth.example.test/callback',
	'redirect_uri: /callback on the request\'s scheme and host');
is($q->{scope}, 'openid email profile', 'scope');
like($q->{state}, qr/^[A-Za-z0-9_-]{22}$/, 'state: 22 base64url characters');
like($q->{nonce}, qr/^[A-Za-z0-9_-]{22}$/, 'nonce: 22 base64url characters');
isnt($q->{nonce}, $q->{state}, 'nonce is not the state');
is($q->{code_challenge_method}, 'S256', 'code_challenge_method=S256');
like($l->{location}, qr/&access_type=online&ui_locales=de$/, 'extra_auth_args appended verbatim');

like($l->{set_cookie},
	qr/^gpt_auth_state_\Q$q->{state}\E=s1\.\Q${\ key_id($key)}\E\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}; Path=\/; Max-Age=600; HttpOnly; SameSite=Lax$/,
	'state cookie: name, value format and attributes');
ok($l->{state}, 'state cookie verifies with the key (STATE-COOKIE.md)');
my $st = $l->{state} || {};
is($st->{sid}, $q->{state}, 'state cookie sid is the state parameter');
is($st->{nonce}, $q->{nonce}, 'state cookie nonce is the nonce parameter');
is($st->{return_url}, $rd, 'state cookie return_url is rd');
is($st->{provider}, 'corp', 'state cookie provider');
ok(abs(($st->{exp} // 0) - time() - 600) <= 2, 'state cookie expires in 600 s');
like($st->{verifier} // '', qr/^[A-Za-z0-9_-]{43}$/, 'PKCE verifier: 43 characters');
is($q->{code_challenge}, encode_base64url(sha256($st->{verifier} // '')),
	'code_challenge is S256 of the verifier');

my $disc = $idp->last_request(path => '/corp/.well-known/openid-configuration');
is($disc && $disc->{method}, 'GET', 'discovery: GET <issuer>/.well-known/openid-configuration');
is($disc && join(',', grep { defined $disc->{headers}{$_} } qw/ cookie authorization /), '',
	'discovery: no browser cookie, no Authorization sent to the provider');

my $l2 = login('corp', switch => 1);
is($l2->{auth}{prompt}, 'login', 'switch=1: prompt=login');
isnt($l2->{sid}, $l->{sid}, 'a second login has its own state');
isnt($l2->{state}{verifier}, $st->{verifier}, 'and its own verifier');
is($idp->count(path => '/corp/.well-known/openid-configuration'), 1,
	'discovery fetched once for two logins (cached)');
is($l->{auth}{hd}, undef, 'no hosted_domain: no hd parameter');

my $lport = login('corp', host => 'auth.example.test:8443');
is($lport->{auth}{redirect_uri}, 'http://auth.example.test:8443/callback',
	'redirect_uri keeps the Host header\'s port');
my $lhtml = start_login($key, provider => 'html', rd => '/', path => '/login-html');
like($lhtml->{location}, qr/[?&]client_id=%3Cclient%3E&/, 'client_id percent-encoded in the URL');
my $lg = start_login($key, provider => 'google', rd => '/', path => '/login-html', switch => 1);
is($lg->{auth}{prompt}, 'select_account', 'switch=1 with Google: prompt=select_account');
like(body(request('/login-html', host => 'auth.example.test')),
	qr{>Sign in with Google</a>}, 'Google\'s default display name');

# a whole login: the provider's authorization endpoint, the callback, the token exchange

$mark = log_offset($t);
my $back = authorize_at_idp($l);
is($back && $back->{state}, $l->{sid}, 'provider redirects back with our state');
like($back && $back->{location}, qr{^http://auth\.example\.test/callback\?code=}, '... to the redirect_uri');
token_for($l, '/corp/token');
my $now = time();
$r = callback($l, code => $back->{code});
is(status($r), 302, 'callback: 302');
is(header($r, 'Location'), $rd, 'callback: back to rd');
my @sc = headers($r, 'Set-Cookie');
is(scalar(@sc), 2, 'callback: two Set-Cookie headers');
is($sc[0], "gpt_auth_state_$l->{sid}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; "
	. 'Expires=Thu, 01 Jan 1970 00:00:00 GMT', 'the state cookie is cleared');
like($sc[1] // '', qr/^gpt_auth=[^;]+; Path=\/; Domain=\.example\.test; Max-Age=604800; HttpOnly; SameSite=Lax$/,
	'session cookie with Domain, Max-Age, HttpOnly, SameSite, no Secure (cookie_secure off)');
my ($session) = ($sc[1] // '') =~ /^gpt_auth=([^;]+)/;
my $s = verify_cookie(key => $key, value => $session // '');
ok($s, 'session cookie verifies with the suite\'s codec (docs/cookie-format.md)');
is($s && $s->{email}, 'alice@example.test', 'session for the ID token\'s email');
is($s && $s->{kid}, key_id($key), 'signed with the first key');
ok($s && abs($s->{iat} - $now) <= 2 && $s->{exp} - $s->{iat} == 604800,
	'issued now, valid for gpt_auth_cookie_max_age (7d)');
like(log_since($t, $mark),
	qr/\[info\].*gpt_auth: login: "alice\@example\.test" signed in via provider "corp"/,
	'login logged');

my $tr = $idp->last_request(path => '/corp/token') // {};
is($tr->{method}, 'POST', 'token exchange: POST to the token endpoint from discovery');
is($tr->{headers}{'content-type'}, 'application/x-www-form-urlencoded',
	'token exchange: form content type');
my $form = FakeIdP::form_decode($tr->{body});
is_deeply($form, { grant_type => 'authorization_code', code => $back->{code},
	redirect_uri => 'http://auth.example.test/callback', code_verifier => $st->{verifier} },
	'token exchange: grant_type, code, redirect_uri, the state cookie\'s verifier; no secret');
is($tr->{headers}{authorization},
	'Basic ' . encode_base64('corp%20client:pa%3Ass%2Fwo%2Brd%25', ''),
	'client_secret_basic: Basic base64(urlencode(id):urlencode(secret))');
is($tr->{headers}{accept}, 'application/json', 'token exchange: Accept: application/json');
is($tr->{headers}{cookie}, undef, 'token exchange: the browser\'s cookies are not forwarded');
is($idp->count(path => '/corp/jwks'), 1, 'JWKS fetched once');

$r = request('/page.html', host => 'gpt4.example.test', cookie => "gpt_auth=$session");
is(status($r), 200, 'the new session opens a protected page on another subdomain');
is(header($r, 'X-User'), 'alice@example.test', '... as the signed-in user');

my $r2;
(undef, $r2) = full_login('corp', rd => 'https://gpt4.example.test/second');
is(status($r2), 302, 'second login: 302');
is(header($r2, 'Location'), 'https://gpt4.example.test/second', 'second login: its own rd');
is($idp->count(path => '/corp/.well-known/openid-configuration')
	. '/' . $idp->count(path => '/corp/jwks'), '1/1',
	'second login: discovery and JWKS from the cache');

# replay of the first answer (same code, same state cookie): the provider refuses the code

$mark = log_offset($t);
$r = callback($l, code => $back->{code});
is(status($r), 400, 'replayed code: 400');
like(body($r), qr{<h1>Sign-in expired</h1>}, 'replayed code: sign-in expired page');
like(body($r), qr{<a href="http://auth\.example\.test/login">Sign in again</a>},
	'error page links to the login URL');
is(scalar(() = headers($r, 'Set-Cookie')), 0, 'replayed code: no cookie');
like(log_since($t, $mark),
	qr/\[info\].*gpt_auth: login refused: provider "corp": code rejected: invalid_grant \(code already used\)/,
	'replayed code: logged');

# code injection: a code issued for another login's PKCE challenge

my $victim = login('corp');
my $vback = authorize_at_idp($victim);
my $attacker = login('corp');
token_for($attacker, '/corp/token');
$mark = log_offset($t);
$r = callback($attacker, code => $vback->{code});
is(status($r), 400, 'code from another login (PKCE mismatch): 400');
like(log_since($t, $mark), qr/code rejected: invalid_grant \(PKCE verification failed\)/,
	'PKCE mismatch refused by the provider, logged');

# several tabs: two logins started, finished in reverse order

my $tab1 = login('corp', rd => 'https://gpt4.example.test/tab1');
my $tab2 = login('corp', rd => 'https://gpt4.example.test/tab2');
my $b1 = authorize_at_idp($tab1);
my $b2 = authorize_at_idp($tab2);
token_for($tab2, '/corp/token');
$r = callback($tab2, code => $b2->{code},
	cookie => "$tab1->{cookie_name}=$tab1->{cookie_value}; "
		. "$tab2->{cookie_name}=$tab2->{cookie_value}");
is(header($r, 'Location'), 'https://gpt4.example.test/tab2', 'tab 2 finishes with both cookies');
token_for($tab1, '/corp/token');
$r = callback($tab1, code => $b1->{code},
	cookie => "$tab2->{cookie_name}=$tab2->{cookie_value}; "
		. "$tab1->{cookie_name}=$tab1->{cookie_value}");
is(header($r, 'Location'), 'https://gpt4.example.test/tab1', 'then tab 1');

# client_secret_post

my ($lp, $rp) = full_login('post');
is(status($rp), 302, 'client_secret_post login: 302');
$tr = $idp->last_request(path => '/post/token') // {};
$form = FakeIdP::form_decode($tr->{body});
is_deeply([ @$form{qw/ client_id client_secret /} ], [ 'post-client', 'post secret' ],
	'client_secret_post: client_id and client_secret in the body');
is($tr->{headers}{authorization}, undef, 'client_secret_post: no Authorization header');
is($form->{code_verifier}, $lp->{state}{verifier}, 'client_secret_post: verifier sent');
like($tr->{body}, qr/(^|&)client_secret=post%20secret(&|$)/, 'secret form-encoded');

# explicit endpoints: no discovery at all

my $lo = login('ovr');
is($lo->{status}, 302, 'explicit endpoints: 302');
like($lo->{location}, qr{^\Q$IDP\E/ovr/authz\?tenant=t1&response_type=code&},
	'authorization_endpoint with its own query: parameters appended with &');
is($lo->{auth}{redirect_uri}, 'http://auth.example.test/cb2', 'absolute redirect_uri');
like($lo->{set_cookie} // '', qr/; Path=\/; /,
	'state cookie path: the whole login site (the login page sees and prunes earlier ones)');
$idp->respond('/ovr/tok', body => JSON::PP->new->encode({
	id_token => sign_jwt($rsa, ok_claims($lo)), token_type => 'Bearer' }));
$r = callback($lo, code => 'ovr-code', path => '/cb2');
is(status($r), 302, 'explicit endpoints: login completes');
$tr = $idp->last_request(path => '/ovr/tok') // {};
is(FakeIdP::form_decode($tr->{body})->{redirect_uri}, 'http://auth.example.test/cb2',
	'token exchange at token_endpoint with the configured redirect_uri');
is($idp->count(path => '/ovr/keys'), 1, 'keys from jwks_uri');
is($idp->count(path => qr{^/ovr/\.well-known}), 0, 'no discovery request');

# the callback's allowlist

$mark = log_offset($t);
my ($lb, $rb) = full_login('corp', claims => { email => 'bob@example.test' });
is(status($rb), 403, 'user not on the allowlist: 403');
like(body($rb), qr{You are signed in as <b>bob\@example\.test</b>}, 'not-allowed page names the user');
like(body($rb), qr{<p><a class="button" href="/logout">Sign out</a></p>},
	'not-allowed page: sign out (gpt_auth_logout_url)');
my $again = 'http://auth.example.test/login?rd=' . urlencode($rd) . '&provider=corp&switch=1';
(my $again_html = $again) =~ s/&/&amp;/g;
like(body($rb), qr{<p><a href="\Q$again_html\E">Sign in with another account</a></p>},
	'not-allowed page: sign in with another account (login URL, rd, provider, switch)');
@sc = headers($rb, 'Set-Cookie');
is(scalar(@sc), 1, 'not allowed: one Set-Cookie');
like($sc[0] // '', qr/^gpt_auth_state_\Q$lb->{sid}\E=; .*Max-Age=0/,
	'not allowed: only the state cookie is cleared, no session');
like(log_since($t, $mark), qr/\[info\].*gpt_auth: login refused: "bob\@example\.test" \(provider "corp"\) is not on the allowlist "\Q${\ $t->testdir()}\E\/allow"/,
	'not allowed: logged with the list');
unlike(log_since($t, $mark), qr/signed in via/, 'not allowed: no "signed in" line');

$r = request(substr($again, length('http://auth.example.test')), host => 'auth.example.test');
is(status($r), 302, '"another account" link starts a login');
is(query_params(header($r, 'Location') // '')->{prompt}, 'login',
	'... with prompt=login');

my ($lc, $rc) = full_login('corp', claims => { email => 'Carol@Example.TEST' });
is(status($rc), 302, 'allowlist matching is case-insensitive');

# logout

$mark = log_offset($t);
$r = request('/logout', host => 'auth.example.test', cookie => "gpt_auth=$session");
is(status($r), 302, 'logout: 302');
is(header($r, 'Location'), 'http://auth.example.test/login', 'logout: to the login URL');
is(header($r, 'Clear-Site-Data'), '"cache"', 'logout: the login site\'s cached pages cleared');
is(header($r, 'Cache-Control'), 'no-store', 'logout: the answer itself not cached');
@sc = headers($r, 'Set-Cookie');
is_deeply(\@sc, [
	'gpt_auth=; Path=/; Domain=.example.test; Max-Age=0; HttpOnly; SameSite=Lax; '
		. 'Expires=Thu, 01 Jan 1970 00:00:00 GMT',
	'gpt_auth=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; '
		. 'Expires=Thu, 01 Jan 1970 00:00:00 GMT',
], 'logout: clears the domain cookie and a host-only one');
like(log_since($t, $mark), qr/\[info\].*gpt_auth: logout: "alice\@example\.test"/,
	'logout logged');

$r = request('/logout?rd=' . urlencode('https://gpt4.example.test/bye'),
	host => 'auth.example.test');
is(header($r, 'Location'), 'https://gpt4.example.test/bye', 'logout: to an allowed rd');
is(status(request('/logout', host => 'auth.example.test', method => 'POST', body => 'x=1')),
	302, 'POST /logout: 302');
is(status(request('/logout', host => 'auth.example.test', method => 'PUT', body => 'x=1')),
	405, 'PUT /logout: 405');

# the gpt_auth_cookie_* directives

my $lx = login('corp', host => 'custom.example.test', rd => '/app/');
like($lx->{set_cookie} // '',
	qr/^sess_state_\Q$lx->{sid}\E=s1\.[^;]+; Path=\/; Max-Age=600; HttpOnly; Secure; SameSite=Lax$/,
	'state cookie named after gpt_auth_cookie_name; Secure; always Lax (cross-site redirect)');
is($lx->{auth}{redirect_uri}, 'http://custom.example.test/callback', 'redirect_uri on this host');
ok(state_decode($key, "sess_state_$lx->{sid}", $lx->{cookie_value} // '', time()),
	'state cookie MAC bound to its name');
token_for($lx, '/corp/token');
my $bx = authorize_at_idp($lx);
$r = callback($lx, code => $bx->{code});
is(status($r), 302, 'login with custom cookie settings: 302');
@sc = headers($r, 'Set-Cookie');
is($sc[0] // '', "sess_state_$lx->{sid}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax; "
	. 'Expires=Thu, 01 Jan 1970 00:00:00 GMT', 'custom: state cookie cleared');
like($sc[1] // '', qr/^sess=[^;]+; Path=\/app; Max-Age=3600; HttpOnly; Secure; SameSite=Strict$/,
	'custom: session cookie name, Path, Max-Age, Secure, SameSite, host-only');
my ($sx) = ($sc[1] // '') =~ /^sess=([^;]+)/;
my $vx = verify_cookie(key => $key, value => $sx // '', name => 'sess');
ok($vx && $vx->{exp} - $vx->{iat} == 3600, 'custom: signed for the name "sess", valid 1h');

# page templates

$r = request('/login-tpl?rd=' . urlencode("/p?a=1&b='x'"), host => 'auth.example.test',
	cookie => "gpt_auth=$alice");
is(status($r), 200, 'custom login page: 200');
is(body($r), "<title>Custom</title>\n"
	. "[<p><a class=\"button\" href=\"?provider=corp&amp;rd=%2Fp%3Fa%3D1%26b%3D%27x%27\">Sign in with Corp SSO</a></p>\n]\n"
	. "[<p>You are signed in as <b>alice\@example.test</b>. <a href=\"/p?a=1&amp;b=&#39;x&#39;\">Continue</a></p>]\n"
	. "[/p?a=1&amp;b=&#39;x&#39;]\n"
	. "[{{unknown}}]\n",
	'custom login page: placeholders filled (values escaped), unknown ones kept');

my $lt = login('corp');
token_for($lt, '/corp/token', email => 'bob@example.test');
my $bt = authorize_at_idp($lt);
$r = callback($lt, code => $bt->{code}, path => '/callback-tpl');
is(status($r), 403, 'custom not-allowed page: 403');
is(body($r), "NA email=bob\@example.test logout= login=http://auth.example.test/login\n"
	. "<p><a href=\"http://auth.example.test/login?rd=https%3A%2F%2Fgpt4.example.test%2Fchat%3Fx%3D1&amp;provider=corp&amp;switch=1\">Sign in with another account</a></p>\n\n",
	'custom not-allowed page: filled; no sign-out button with gpt_auth_logout_url off');

$r = request('/callback-tpl?error=access_denied', host => 'auth.example.test');
is(status($r), 403, 'custom error page: status kept');
is(body($r), "ERR 403 / Sign-in cancelled / The sign-in was cancelled or refused. / "
	. "http://auth.example.test/login\n", 'custom error page: filled');

###############################################################################
