#!/usr/bin/perl

# gpt_auth: ID token verification at the callback, with tokens minted by the suite through
# openssl (t/lib/IdToken.pm). Every accept/reject rule: issuer, audience and azp, exp/iat/nbf
# with the leeway (default and configured), nonce, sub, email and email_verified, hosted
# domains; algorithms (RS256 and ES256 accepted; none, HS256 keyed with the public key, others
# refused), wrong keys, tampered and malformed tokens, an oversized token. Key sets: cached per
# worker whatever Cache-Control says (at least 5 minutes), refetched once when a token names
# an unknown key (the provider rotated its keys), at most once a minute; a local jwks_file is
# never fetched.

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

    gpt_auth_provider corp {
        issuer http://127.0.0.1:8081/corp;
        client_id corp-client;
        client_secret_file %%TESTDIR%%/secret;
    }

    gpt_auth_provider hd {
        issuer http://127.0.0.1:8081/hd;
        client_id hd-client;
        client_secret_file %%TESTDIR%%/secret;
        hosted_domain example.test;
    }

    gpt_auth_provider hd2 {
        issuer http://127.0.0.1:8081/hd2;
        client_id hd2-client;
        client_secret_file %%TESTDIR%%/secret;
        hosted_domain example.test EXAMPLE.org;
    }

    gpt_auth_provider lee {
        issuer http://127.0.0.1:8081/lee;
        client_id lee-client;
        client_secret_file %%TESTDIR%%/secret;
        leeway 5m;
    }

    gpt_auth_provider rot {
        issuer http://127.0.0.1:8081/rot;
        client_id rot-client;
        client_secret_file %%TESTDIR%%/secret;
    }

    gpt_auth_provider unk {
        issuer http://127.0.0.1:8081/unk;
        client_id unk-client;
        client_secret_file %%TESTDIR%%/secret;
    }

    gpt_auth_provider cache {
        issuer http://127.0.0.1:8081/cache;
        client_id cache-client;
        client_secret_file %%TESTDIR%%/secret;
    }

    gpt_auth_provider file {
        issuer http://127.0.0.1:8081/file;
        client_id file-client;
        client_secret_file %%TESTDIR%%/secret;
        jwks_file %%TESTDIR%%/file.jwks;
    }

    server {
        listen       127.0.0.1:8080;
        server_name  auth.example.test;

        include %%FETCH_CONF%%;

        location = /login {
            gpt_auth_login corp hd hd2 lee rot unk cache file;
        }

        location = /callback {
            gpt_auth_callback;
        }
    }
}

EOF

my $fetch_conf = "$FindBin::Bin/../nginx-conf/gpt_auth_fetch.conf";
$conf =~ s/%%FETCH_CONF%%/$fetch_conf/g;

my $dir = $t->testdir();
my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, "$dir/keys";
$t->write_file('secret', "s3cret\n");

my $rsa = new_rsa_key($dir, 'rsa-1');
my $rsa2 = new_rsa_key($dir, 'rsa-2');
my $ec = new_ec_key($dir, 'ec-1');
my $impostor = new_rsa_key($dir, 'rsa-1');	# same kid, another key
my $k3 = new_rsa_key($dir, 'k3');

$t->write_file('file.jwks', jwks_json($rsa));
$t->write_file_expand('nginx.conf', $conf);

for my $p (qw/ corp hd lee unk file /) {
	$idp->serve_discovery("/$p");
}
$idp->respond('/corp/jwks', body => jwks_json($rsa, $ec));
$idp->respond('/hd/jwks', body => jwks_json($rsa));
$idp->serve_discovery('/hd2');
$idp->respond('/hd2/jwks', body => jwks_json($rsa, $rsa2));
$idp->respond('/lee/jwks', body => jwks_json($rsa));
$idp->serve_discovery('/rot');
$idp->respond('/rot/jwks', body => jwks_json($rsa));
$idp->respond('/unk/jwks', body => jwks_json($rsa));
$idp->serve_discovery('/cache', headers => { 'Cache-Control' => 'max-age=0' });
$idp->respond('/cache/jwks', body => jwks_json($rsa), headers => { 'Cache-Control' => 'no-store' });
$idp->respond('/file/jwks', status => 500, body => 'must not be fetched');

$idp->start();
$t->run()->plan(154);

###############################################################################

my $JSON = JSON::PP->new->canonical;

sub login {
	my ($p) = @_;
	return start_login($key, provider => $p, rd => '/app', issuer => "$IDP/$p",
		client_id => "$p-client");
}

# try(provider => 'corp', claims => {...}, key => $rsa, header => {...},
#     token => sub { my ($l) = @_; ... }) -> ($response, $log, $login)
my sub try {
	my (%a) = @_;
	my $p = $a{provider} // 'corp';
	my $l = login($p);
	my $tok = $a{token} ? $a{token}->($l)
		: sign_jwt($a{key} // $rsa, ok_claims($l, %{ $a{claims} // {} }),
			header => $a{header} // {});
	$idp->respond("/$p/token", body => $JSON->encode({ id_token => $tok,
		token_type => 'Bearer' }));
	my $mark = log_offset($t);
	my $r = callback($l, code => 'c');
	return ($r, log_since($t, $mark), $l);
}

my sub accepted {
	my ($name, %a) = @_;
	my ($r, $log) = try(%a);
	my $p = $a{provider} // 'corp';
	is(status($r) . ' ' . ((header($r, 'Location') // '') =~ m{/app$} ? 'rd' : 'no rd')
		. ' ' . ($log =~ /login: "[^"]+" signed in via provider "\Q$p\E"/ ? 'logged' : '-'),
		'302 rd logged', "$name: accepted");
}

my sub refused {
	my ($name, $why, %a) = @_;
	my ($r, $log, $l) = try(%a);
	my $p = $a{provider} // 'corp';
	my $want = $a{status} // 401;
	my $session = grep { /^gpt_auth=/ } headers($r, 'Set-Cookie');
	# the login is used up: its state cookie is cleared, as after a sign-in
	my $cleared = grep { /^\Q$l->{cookie_name}\E=;.*Max-Age=0/i } headers($r, 'Set-Cookie');
	is(status($r) . ($session ? ' with session' : '') . ($cleared ? '' : ' state kept'), $want,
		"$name: $want, login state cleared");
	like($log, qr/\[info\].*gpt_auth: login refused: provider "\Q$p\E": ID token $why/,
		"$name: logged");
	return $r;
}


# accepted

accepted('RS256');
accepted('ES256', key => $ec);
accepted('several audiences with azp',
	claims => { aud => [ 'corp-client', 'other' ], azp => 'corp-client' });
accepted('one audience in an array', claims => { aud => [ 'corp-client' ] });
accepted('azp equal to the client id', claims => { azp => 'corp-client' });
accepted('expired 30s ago, within the default leeway (60s)', claims => { exp => time() - 30 });
accepted('issued 30s in the future, within the leeway', claims => { iat => time() + 30 });
accepted('nbf 30s in the future, within the leeway', claims => { nbf => time() + 30 });
accepted('email_verified "true" (a string)', claims => { email_verified => 'true' });
accepted('no kid, one RS256 key in the set', header => { kid => undef });
accepted('unknown extra claims and header members',
	claims => { name => 'Alice', picture => 'x', groups => [ 'a' ] },
	header => { typ => 'at+jwt', x5t => 'abc' });

my $r = refused('no kid, two RS256 keys in the set',
	qr/no kid, and the key set has not exactly one RS256 key/,
	provider => 'hd2', header => { kid => undef },
	claims => { hd => 'example.test' });
like(body($r), qr{<h1>Sign-in failed</h1>\n<p>The answer of the identity provider could not be verified\. Please try again\.</p>},
	'401 page');
is(join(' ', map { /^([^=]+)=([^;]*)/ ? "$1=$2" : $_ } headers($r, 'Set-Cookie')),
	(headers($r, 'Set-Cookie'))[0] =~ /^([^=]+)=/ ? "$1=" : '-',
	'refused token: no session cookie, only the login state cleared');

# issuer, audience, azp

refused('wrong iss', qr/issuer "https:\/\/evil\.example" not accepted/,
	claims => { iss => 'https://evil.example' });
refused('iss with a trailing slash', qr/issuer "\Q$IDP\E\/corp\/" not accepted/,
	claims => { iss => "$IDP/corp/" });
refused('iss of another configured provider', qr/issuer "\Q$IDP\E\/hd" not accepted/,
	claims => { iss => "$IDP/hd" });
refused('no iss', qr/no iss claim/, claims => { iss => undef });
refused('wrong aud', qr/audience does not include the client id/,
	claims => { aud => 'other-client' });
refused('aud of other clients only', qr/audience does not include the client id/,
	claims => { aud => [ 'a', 'b' ] });
refused('no aud', qr/no aud claim/, claims => { aud => undef });
refused('aud not a string', qr/aud claim has the wrong type/, claims => { aud => 42 });
refused('several audiences without azp', qr/several audiences and no azp/,
	claims => { aud => [ 'corp-client', 'other' ] });
refused('wrong azp', qr/azp is not the client id/, claims => { azp => 'other' });
refused('several audiences, azp another client', qr/azp is not the client id/,
	claims => { aud => [ 'corp-client', 'other' ], azp => 'other' });

# time

refused('expired 120s ago', qr/expired 12\ds ago/, claims => { exp => time() - 120 });
refused('no exp', qr/no exp claim/, claims => { exp => undef });
refused('exp a string', qr/exp claim has the wrong type/, claims => { exp => time() . "0" });
refused('issued 120s in the future', qr/issued in the future/, claims => { iat => time() + 120 });
refused('no iat', qr/no iat claim/, claims => { iat => undef });
refused('nbf 120s in the future', qr/not valid yet \(nbf\)/, claims => { nbf => time() + 120 });

accepted('leeway 5m: expired 200s ago', provider => 'lee', claims => { exp => time() - 200 });
refused('leeway 5m: expired 400s ago', qr/expired \d+s ago/, provider => 'lee',
	claims => { exp => time() - 400 });

# nonce

refused('wrong nonce', qr/nonce missing or wrong/, claims => { nonce => 'AAAAAAAAAAAAAAAAAAAAAA' });
refused('no nonce', qr/nonce missing or wrong/, claims => { nonce => undef });
my $other_login = login('corp');
refused('nonce of another login', qr/nonce missing or wrong/,
	claims => { nonce => $other_login->{state}{nonce} });

# subject and email

refused('no sub', qr/no sub claim/, claims => { sub => undef });
refused('empty sub', qr/no sub claim/, claims => { sub => '' });
refused('no email', qr/no email claim/, claims => { email => undef });
refused('email not an address', qr/email claim is not a valid address/,
	claims => { email => 'alice' });
refused('email with CR LF', qr/email claim is not a valid address/,
	claims => { email => "alice\@example.test\r\nSet-Cookie: x=1" });
refused('email with a space', qr/email claim is not a valid address/,
	claims => { email => 'alice smith@example.test' });
my $unverified = refused('email_verified false', qr/email address not verified/, status => 403,
	claims => { email_verified => JSON::PP::false });
like(body($unverified), qr/has not verified the email address of this account/,
	'unverified: the page says why');
unlike(body($unverified), qr/try again/i, 'unverified: and does not ask to try again');
refused('email_verified missing', qr/email address not verified/, status => 403,
	claims => { email_verified => undef });
refused('email_verified "false"', qr/email address not verified/, status => 403,
	claims => { email_verified => 'false' });

# hosted domains

my $lh = login('hd');
is($lh->{auth}{hd}, 'example.test', 'one hosted_domain: hd parameter in the authorization request');
is(login('hd2')->{auth}{hd}, undef, 'two hosted domains: no hd parameter');
refused('hd required, missing', qr/no hd claim \(a hosted domain is required\)/,
	provider => 'hd');
refused('hd of another domain', qr/hosted domain not accepted/, provider => 'hd',
	claims => { hd => 'evil.example' });
refused('hd a parent domain', qr/hosted domain not accepted/, provider => 'hd',
	claims => { hd => 'test' });
accepted('hd matches', provider => 'hd', claims => { hd => 'example.test' });
accepted('hd matches case-insensitively', provider => 'hd', claims => { hd => 'Example.TEST' });
accepted('hd: the second of two domains', provider => 'hd2', claims => { hd => 'example.org' },
	header => { kid => 'rsa-1' });

# algorithms and keys

refused('alg none', qr/unsupported algorithm "none"/,
	token => sub { unsigned_jwt({ alg => 'none', typ => 'JWT' }, ok_claims($_[0])) });
refused('alg none with a kid and a fake signature', qr/unsupported algorithm "none"/,
	token => sub { unsigned_jwt({ alg => 'none', kid => 'rsa-1' }, ok_claims($_[0])) . 'c2ln' });
refused('HS256 keyed with the RSA public key (PEM)', qr/unsupported algorithm "HS256"/,
	token => sub { hs256_jwt($rsa->{public_pem}, { kid => 'rsa-1' }, ok_claims($_[0])) });
refused('HS256 keyed with the JWK modulus', qr/unsupported algorithm "HS256"/,
	token => sub { hs256_jwt($rsa->{n}, { kid => 'rsa-1' }, ok_claims($_[0])) });
refused('RS512', qr/unsupported algorithm "RS512"/, header => { alg => 'RS512' });
refused('PS256', qr/unsupported algorithm "PS256"/, header => { alg => 'PS256' });
refused('no alg', qr/malformed token \(header has no alg\)/, header => { alg => undef });
refused('signed by another key under a known kid', qr/bad signature/, key => $impostor);
refused('ES256 token naming an RSA key', qr/key "rsa-1" is not a key for the token's algorithm/,
	key => $ec, header => { kid => 'rsa-1' });
refused('RS256 token naming an EC key', qr/key "ec-1" is not a key for the token's algorithm/,
	header => { kid => 'ec-1' });
refused('claims changed after signing', qr/bad signature/, token => sub {
	my ($l) = @_;
	my ($h, undef, $s) = split /\./, sign_jwt($rsa, ok_claims($l, email => 'eve@example.test'));
	return join('.', $h, b64u_json(ok_claims($l, email => 'admin@example.test')), $s);
});
refused('ES256 signature of the wrong length', qr/bad signature/, token => sub {
	my ($h, $p) = split /\./, sign_jwt($ec, ok_claims($_[0]));
	return "$h.$p." . ('A' x 40);
});

# malformed and oversized

refused('not a JWT', qr/malformed token \(not three dot-separated parts\)/,
	token => sub { 'not-a-jwt' });
refused('four parts', qr/malformed token \(not three dot-separated parts\)/,
	token => sub { sign_jwt($rsa, ok_claims($_[0])) . '.x' });
refused('no signature', qr/malformed token \(no signature\)/, token => sub {
	my ($h, $p) = split /\./, sign_jwt($rsa, ok_claims($_[0]));
	return "$h.$p.";
});
refused('header not base64url', qr/malformed token \(header not base64url\)/,
	token => sub { '!!!.' . b64u_json(ok_claims($_[0])) . '.c2ln' });
refused('header not JSON', qr/malformed token \(header not a JSON object\)/,
	token => sub { 'bm90IGpzb24.' . b64u_json(ok_claims($_[0])) . '.c2ln' });
refused('payload not JSON', qr/malformed token \(payload not a JSON object\)/,
	key => $rsa, token => sub { sign_jwt($rsa, {}, payload => '["array"]') });
refused('crit header', qr/malformed token \(crit header parameter not supported\)/,
	header => { crit => [ 'exp' ] });
refused('20 kB token', qr/token too large \(2\d{4} bytes\)/,
	claims => { padding => 'x' x 20000 });

# key sets: caching, rotation, the refetch limit

is($idp->count(path => '/corp/jwks'), 1, 'all of the above: one JWKS fetch (cached)');
is($idp->count(path => '/corp/.well-known/openid-configuration'), 1,
	'all of the above: one discovery fetch');

accepted('Cache-Control no-store', provider => 'cache');
accepted('Cache-Control no-store, again', provider => 'cache');
is($idp->count(path => '/cache/jwks') . '/'
	. $idp->count(path => '/cache/.well-known/openid-configuration'), '1/1',
	'no-store / max-age=0: still cached (at least 5 minutes)');

accepted('rotation: the old key', provider => 'rot');
is($idp->count(path => '/rot/jwks'), 1, 'rotation: one fetch so far');
$idp->respond('/rot/jwks', body => jwks_json($rsa, $k3));
my ($rr, $log) = try(provider => 'rot', key => $k3);
is(status($rr), 302, 'rotation: token signed with the new key accepted');
like($log, qr/\[info\].*gpt_auth: provider "rot": ID token signed with unknown key "k3", refetching the key set/,
	'rotation: refetch logged');
is($idp->count(path => '/rot/jwks'), 2, 'rotation: the key set was fetched again');
accepted('rotation: the old key, still in the set', provider => 'rot');
my $k4 = new_rsa_key($dir, 'k4');
$idp->respond('/rot/jwks', body => jwks_json($rsa, $k3, $k4));
refused('rotation: another new key within a minute',
	qr/signed with unknown key "k4" \(key set refetched less than a minute ago\)/,
	provider => 'rot', key => $k4);
is($idp->count(path => '/rot/jwks'), 2, 'refetch limit: no third fetch within a minute');
refused('made-up kid within a minute', qr/signed with unknown key "nope" \(key set refetched/,
	provider => 'rot', header => { kid => 'nope' });
is($idp->count(path => '/rot/jwks'), 2, 'refetch limit: still two fetches');

($rr, $log) = try(provider => 'unk', header => { kid => 'zzz' });
is(status($rr), 401, 'kid not in the key set, even after a refetch: 401');
like($log, qr/ID token signed with unknown key "zzz", refetching the key set/,
	'unknown kid: refetch logged');
like($log, qr/login refused: provider "unk": ID token signed with unknown key "zzz" while/,
	'unknown kid: refused after the refetch');
is($idp->count(path => '/unk/jwks'), 2, 'unknown kid: first fetch and one refetch');

# a local key set

accepted('jwks_file', provider => 'file');
refused('jwks_file, unknown kid: no refetch', qr/signed with unknown key "zzz" while/,
	provider => 'file', header => { kid => 'zzz' });
is($idp->count(path => '/file/jwks'), 0, 'jwks_file: the provider\'s jwks_uri is never fetched');

###############################################################################
