#!/usr/bin/perl

# gpt_auth: the session cookie gate. Valid, missing, tampered, truncated, wrong-key, expired,
# future and oversized cookies; 302 for browser navigations vs 401 for everything else; the
# cookie format as specified in docs/cookie-format.md (minted here in Perl).

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use MIME::Base64 qw/ encode_base64url /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    log_format gpt '$uri $status "$gpt_auth_result" "$gpt_auth_email"';

    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_login_url https://auth.example.com/login;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        access_log %%TESTDIR%%/gpt.log gpt;
        add_header X-Result "$gpt_auth_result" always;
        add_header X-User "$gpt_auth_email" always;

        location / {
            gpt_auth on;
        }

        location /api/ {
            gpt_auth on;
            gpt_auth_login_url off;
        }

        location /short/ {
            gpt_auth on;
            gpt_auth_cookie_max_age 60s;
        }

        location /named/ {
            gpt_auth on;
            gpt_auth_cookie_name sess;
        }

        location /public/ {
        }
    }
}

EOF

my $key = new_key_bytes();
my $other = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';
$t->write_file('page.html', 'protected page');
mkdir($t->testdir() . "/$_") for qw/ api short named public /;
$t->write_file("$_/x", "$_ content") for qw/ api short named public /;

$t->run()->plan(43);

###############################################################################

my $now = time();
my $good = mint_cookie(key => $key, email => 'alice@example.com');
my $html = 'text/html,application/xhtml+xml,*/*;q=0.8';

# the format, pinned against the Rust codec's known-answer vector

is(mint_cookie(key => pack('C*', 0 .. 31), email => 'alice@example.com',
	iat => 1700000000, exp => 1700604800),
	'1.Yw3NKWbE.1700000000.1700604800.YWxpY2VAZXhhbXBsZS5jb20.'
	. 'wadMvXbRPDH2OcsiTKvGdaNadz6v_uqrhvzBWMP9uBY',
	'perl and rust agree on the cookie format');

# valid cookie

my $r = request('/page.html', cookie => "gpt_auth=$good");
is(status($r), 200, 'valid cookie passes');
like(body($r), qr/protected page/, 'valid cookie gets the file');
is(header($r, 'X-User'), 'alice@example.com', '$gpt_auth_email is the user');
is(header($r, 'X-Result'), 'allowed', '$gpt_auth_result allowed');

# missing cookie: 401 for API clients, 302 for browser navigations

$r = request('/page.html');
is(status($r), 401, 'no cookie, no Accept: 401');
is(header($r, 'X-Result'), 'missing', 'result missing');
is(header($r, 'Location'), undef, 'no redirect for API clients');

$r = request('/page.html?a=1&b=%20x', accept => $html);
is(status($r), 302, 'browser navigation: 302');
is(header($r, 'Location'),
	'https://auth.example.com/login?rd=http%3A%2F%2Flocalhost%2Fpage.html%3Fa%3D1%26b%3D%2520x',
	'redirect to login with the original absolute URL in rd');

$r = request('/page.html', accept => $html, host => 'gpt4.example.com:8443');
like(header($r, 'Location'), qr/rd=http%3A%2F%2Fgpt4\.example\.com%3A8443%2Fpage\.html$/,
	'rd keeps host and port');

is(status(request('/page.html', accept => $html, method => 'POST', body => 'x=1')), 401,
	'POST accepting html: 401');
is(status(request('/page.html', accept => $html, headers => ['X-Requested-With: XMLHttpRequest'])),
	401, 'XHR: 401');
is(status(request('/page.html', accept => $html, headers => ['Sec-Fetch-Mode: cors'])), 401,
	'fetch(): 401');
is(status(request('/page.html', accept => $html, headers => ['Sec-Fetch-Mode: navigate'])), 302,
	'Sec-Fetch-Mode navigate: 302');
is(status(request('/page.html', accept => '*/*')), 401, 'Accept */* (curl): 401');
is(status(request('/api/x', accept => $html)), 401, 'gpt_auth_login_url off: 401');
is(status(request('/public/x')), 200, 'location without gpt_auth is open');

# tampering: every byte position of the cookie, changed to another valid character

my @bad;
for my $i (0 .. length($good) - 1) {
	my $c = substr($good, $i, 1);
	my $v = $good;
	substr($v, $i, 1) = $c eq 'A' ? 'B' : ($c eq '.' ? '_' : 'A');
	my $s = status(request('/page.html', cookie => "gpt_auth=$v"));
	push @bad, "$i:$s" unless $s == 401;
}
is("@bad", '', 'a change at any of ' . length($good) . ' byte positions: 401');

@bad = ();
for my $n (0 .. length($good) - 1) {
	my $s = status(request('/page.html', cookie => 'gpt_auth=' . substr($good, 0, $n)));
	push @bad, "$n:$s" unless $s == 401;
}
is("@bad", '', 'every truncation: 401');

$r = request('/page.html', cookie => "gpt_auth=${good}x");
is(status($r), 401, 'appended byte: 401');
is(header($r, 'X-Result'), 'invalid', 'result invalid');

# wrong key, unknown key id, forged signature

$r = request('/page.html', cookie => 'gpt_auth='
	. mint_cookie(key => $other, email => 'alice@example.com'));
is(status($r), 401, 'cookie signed with another key: 401');

$r = request('/page.html', cookie => 'gpt_auth='
	. mint_cookie(key => $other, kid => key_id($key), email => 'alice@example.com'));
is(status($r), 401, 'right key id, wrong key: 401');

$r = request('/page.html', cookie => 'gpt_auth='
	. mint_cookie(key => $key, version => '2', email => 'alice@example.com'));
is(status($r), 401, 'unknown version: 401');

# time

$r = request('/page.html', cookie => 'gpt_auth='
	. mint_cookie(key => $key, email => 'alice@example.com', iat => $now - 7200,
		exp => $now - 10));
is(status($r), 401, 'expired: 401');
is(header($r, 'X-Result'), 'expired', 'result expired');

is(status(request('/page.html', cookie => 'gpt_auth='
	. mint_cookie(key => $key, email => 'alice@example.com', iat => $now + 3600,
		exp => $now + 7200))), 401, 'issued an hour in the future: 401');

is(status(request('/page.html', cookie => 'gpt_auth='
	. mint_cookie(key => $key, email => 'alice@example.com', iat => $now - 30 * 86400,
		exp => $now + 3600))), 401, 'older than the default max age (7d): 401');

my $aged = mint_cookie(key => $key, email => 'alice@example.com', iat => $now - 120,
	exp => $now + 3600);
is(status(request('/page.html', cookie => "gpt_auth=$aged")), 200, '2 minutes old: 200');
is(status(request('/short/x', cookie => "gpt_auth=$aged")), 401,
	'2 minutes old where gpt_auth_cookie_max_age is 60s: 401');

# size

is(status(request('/page.html', cookie => 'gpt_auth=' . ('A' x 2000))), 401, 'oversized: 401');
is(status(request('/page.html', cookie => 'gpt_auth=' . mint_cookie(key => $key,
	email => ('a' x 300) . '@example.com'))), 401, 'signed but overlong address: 401');

# cookie name is bound into the signature

is(status(request('/named/x', cookie => "sess=$good")), 401,
	'cookie minted for another name: 401');
is(status(request('/named/x', cookie => 'sess='
	. mint_cookie(key => $key, name => 'sess', email => 'alice@example.com'))), 200,
	'gpt_auth_cookie_name: 200');

# several cookies with the same name: the first valid one wins

is(status(request('/page.html', cookie => "gpt_auth=junk; other=1; gpt_auth=$good")), 200,
	'invalid then valid cookie: 200');
is(status(request('/page.html', headers => ['Cookie: gpt_auth=junk', "Cookie: gpt_auth=$good"])),
	200, 'valid cookie in a second Cookie header: 200');
is(status(request('/page.html', cookie => "GPT_AUTH=$good")), 401,
	'cookie names are case-sensitive');

# log lines

$t->stop();

my $log = $t->read_file('error.log');
like($log, qr/\[info\].*gpt_auth: access refused: no session cookie "gpt_auth"/,
	'info line for a missing cookie');
like($log, qr/\[info\].*gpt_auth: access refused: session cookie "gpt_auth": bad signature/,
	'info line for a bad signature');
like($log, qr/\[info\].*gpt_auth: access refused: session cookie "gpt_auth": expired \d+s ago/,
	'info line for an expired cookie');
my @own = grep { /gpt_auth:/ } split /\n/, $log;
is(scalar(grep { /\Q$good\E/ } @own), 0, 'the module never logs the cookie');

my $alog = $t->read_file('gpt.log');
like($alog, qr{^/page.html 200 "allowed" "alice\@example.com"$}m, 'log_format with variables');

###############################################################################
