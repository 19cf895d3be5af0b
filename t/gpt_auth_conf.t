#!/usr/bin/perl

# gpt_auth: configuration errors. Every bad directive value fails `nginx -t` with one line that
# names the directive (or file) and the reason, pointing at the file and line.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use MIME::Base64 qw/ encode_base64 /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/);
my $d = $t->testdir();

$t->write_file('good.keys', key_line(new_key_bytes()) . "\n");
chmod 0600, "$d/good.keys";
$t->write_file('open.keys', key_line(new_key_bytes()) . "\n");
chmod 0644, "$d/open.keys";
$t->write_file('empty.keys', "# no keys yet\n\n");
$t->write_file('short.keys', key_line(new_key_bytes()) . "\n" . encode_base64('x' x 16, '') . "\n");
$t->write_file('text.keys', "correct horse battery staple\n");
$t->write_file('zero.keys', encode_base64("\0" x 32, '') . "\n");
$t->write_file('good.allow', "alice\@example.com\n");
$t->write_file('secret', "s3cret\n");
$t->write_file('bad.allow', "alice\@example.com\nbob\n");
mkdir("$d/adir");

# (name, http-level directives, location-level directives, expected error regex)
my @cases = (
	['gpt_auth without key', '', 'gpt_auth on;',
		qr/\[emerg\] gpt_auth: "gpt_auth on" in \S+:\d+ needs "gpt_auth_key_file"/],
	['gpt_auth bad flag', 'gpt_auth_key_file good.keys;', 'gpt_auth maybe;',
		qr/\[emerg\] "gpt_auth" directive invalid value "maybe", it must be "on" or "off" in \S+:\d+/],
	['gpt_auth duplicate', 'gpt_auth_key_file good.keys;', 'gpt_auth on; gpt_auth off;',
		qr/\[emerg\] "gpt_auth" directive is duplicate in/],
	['gpt_auth extra argument', 'gpt_auth_key_file good.keys;', 'gpt_auth on off;',
		qr/\[emerg\] invalid number of arguments in "gpt_auth" directive/],
	['key file missing', 'gpt_auth_key_file nope.keys;', '',
		qr/\[emerg\] "gpt_auth_key_file" directive cannot read "\S+nope\.keys" \(2: No such file or directory\) in \S+:\d+/],
	['key file is a directory', 'gpt_auth_key_file adir;', '',
		qr/\[emerg\] "gpt_auth_key_file" directive cannot read "\S+adir" \(21: Is a directory\)/],
	['key file empty', 'gpt_auth_key_file empty.keys;', '',
		qr/\[emerg\] "gpt_auth_key_file" directive "\S+empty\.keys" contains no key/],
	['key too short', 'gpt_auth_key_file short.keys;', '',
		qr/"\S+short\.keys" line 2: key is 16 bytes, at least 32 are required/],
	['key not base64', 'gpt_auth_key_file text.keys;', '',
		qr/"\S+text\.keys" line 1: key is not valid base64/],
	['key not random', 'gpt_auth_key_file zero.keys;', '',
		qr/"\S+zero\.keys" line 1: key is not random/],
	['key file duplicate', 'gpt_auth_key_file good.keys; gpt_auth_key_file good.keys;', '',
		qr/"gpt_auth_key_file" directive is duplicate/],
	['cookie name', '', 'gpt_auth_cookie_name "a b";',
		qr/"gpt_auth_cookie_name" directive invalid cookie name "a b"/],
	['cookie domain', '', 'gpt_auth_cookie_domain example..com;',
		qr/"gpt_auth_cookie_domain" directive invalid domain "example\.\.com"/],
	['cookie path', '', 'gpt_auth_cookie_path chat;',
		qr/"gpt_auth_cookie_path" directive invalid path "chat" \(must start with "\/"/],
	['cookie max age unit', '', 'gpt_auth_cookie_max_age 5x;',
		qr/"gpt_auth_cookie_max_age" directive invalid time "5x": unknown time unit/],
	['cookie max age zero', '', 'gpt_auth_cookie_max_age 0;',
		qr/"gpt_auth_cookie_max_age" directive must be greater than zero/],
	['cookie samesite', '', 'gpt_auth_cookie_samesite sometimes;',
		qr/"gpt_auth_cookie_samesite" directive invalid value "sometimes", it must be "strict", "lax" or "none"/],
	['cookie secure', '', 'gpt_auth_cookie_secure yes;',
		qr/invalid value "yes" in "gpt_auth_cookie_secure" directive, it must be "on" or "off"/],
	['login url duplicate', '', 'gpt_auth_login_url /a; gpt_auth_login_url /b;',
		qr/"gpt_auth_login_url" directive is duplicate/],
	['allowlist missing', '', 'gpt_auth_allowlist none.allow;',
		qr/"gpt_auth_allowlist" directive allowlist "\S+none\.allow" \(2: No such file or directory\)/],
	['allowlist broken', '', 'gpt_auth_allowlist bad.allow;',
		qr/"gpt_auth_allowlist" directive allowlist "\S+bad\.allow": line 2: expected an address \(user\@domain\) or a domain \(\@domain\)/],
	['wrong context', '', '', qr/"gpt_auth" directive is not allowed here/, 'events'],

	# the login flow
	['provider without client_id', 'gpt_auth_key_file good.keys; gpt_auth_provider p { issuer https://idp.example; client_secret_file secret; }', '',
		qr/\[emerg\] "gpt_auth_provider" "p" has no "client_id" in \S+:\d+/],
	['provider without issuer', 'gpt_auth_key_file good.keys; gpt_auth_provider p { client_id c; client_secret_file secret; }', '',
		qr/"gpt_auth_provider" "p" has no "issuer"/],
	['provider without secret or gsi', 'gpt_auth_key_file good.keys; gpt_auth_provider p { issuer https://idp.example; client_id c; }', '',
		qr/"gpt_auth_provider" "p" needs "client_secret_file" \(authorization code flow\) or "gsi on"/],
	['provider: issuer not a URL', 'gpt_auth_provider p { issuer idp.example; }', '',
		qr/"issuer" "idp\.example" is not an absolute http\(s\) URL/],
	['provider: secret file missing', 'gpt_auth_provider p { client_secret_file nope.secret; }', '',
		qr/"client_secret_file" cannot read "\S+nope\.secret" \(2: No such file or directory\)/],
	['provider: unknown directive', 'gpt_auth_provider p { issuer https://idp.example; colour blue; }', '',
		qr/"colour" is unknown here \(inside "gpt_auth_provider"\)/],
	['provider: bad token auth', 'gpt_auth_provider p { token_endpoint_auth private_key_jwt; }', '',
		qr/"token_endpoint_auth" invalid value "private_key_jwt", it must be "client_secret_basic" or "client_secret_post"/],
	['provider: bad leeway', 'gpt_auth_provider p { leeway soon; }', '',
		qr/"leeway" invalid time "soon"/],
	['provider: scope without openid', 'gpt_auth_provider p { scope "email profile"; }', '',
		qr/"scope" "email profile" must include "openid"/],
	['provider: broken jwks_file', 'gpt_auth_provider p { jwks_file good.allow; }', '',
		qr/"jwks_file" "\S+good\.allow": /],
	['provider duplicate', 'gpt_auth_key_file good.keys; gpt_auth_provider p { issuer https://i.example; client_id c; gsi on; } gpt_auth_provider p { issuer https://i.example; client_id c; gsi on; }', '',
		qr/"gpt_auth_provider" directive "p" is duplicate/],
	['provider in a server', '', 'gpt_auth_provider p { }',
		qr/"gpt_auth_provider" directive is not allowed here/],
	['login without a provider', 'gpt_auth_key_file good.keys;', 'gpt_auth_login;',
		qr/invalid number of arguments in "gpt_auth_login" directive/],
	['login with an unknown provider', 'gpt_auth_key_file good.keys;', 'gpt_auth_login nope;',
		qr/"gpt_auth_login" in \S+:\d+: no "gpt_auth_provider nope" is defined/],
	['login without a key', 'gpt_auth_provider p { issuer https://i.example; client_id c; gsi on; }', 'gpt_auth_login p;',
		qr/"gpt_auth_login" in \S+:\d+ needs "gpt_auth_key_file"/],
	['callback without a provider', 'gpt_auth_key_file good.keys;', 'gpt_auth_callback;',
		qr/"gpt_auth_callback" in \S+:\d+ needs a "gpt_auth_provider" block/],
	['two content handlers', 'gpt_auth_key_file good.keys; gpt_auth_provider p { issuer https://i.example; client_id c; gsi on; }', 'gpt_auth_login p; gpt_auth_logout;',
		qr/"gpt_auth_logout" directive is duplicate \(a location runs one gpt_auth content handler\)/],
	['login page file missing', '', 'gpt_auth_login_page nope.html;',
		qr/"gpt_auth_login_page" directive cannot read "\S+nope\.html" \(2: No such file or directory\)/],
	['logout url', '', 'gpt_auth_logout_url "java script:x";',
		qr/"gpt_auth_logout_url" directive invalid URL "java script:x"/],
	['return hosts', '', 'gpt_auth_return_hosts "a b";',
		qr/"gpt_auth_return_hosts" directive invalid host "a b"/],
);

$t->plan(2 * @cases + 4);

sub conf {
	my ($http, $loc, $events) = @_;
	$events //= '';
	return <<"EOF";
%%TEST_GLOBALS%%
daemon off;
events {
    $events
}
http {
    %%TEST_GLOBALS_HTTP%%
    $http
    server {
        listen 127.0.0.1:8080;
        location / {
            $loc
        }
    }
}
EOF
}

my $i = 0;
for my $c (@cases) {
	my ($name, $http, $loc, $re, $where) = @$c;
	my $events = defined $where ? 'gpt_auth on;' : '';
	my ($ok, $out) = conf_test($t, 'case' . $i++ . '.conf', conf($http, $loc, $events));
	ok(!$ok, "$name: nginx -t fails");
	like($out, $re, "$name: message") or diag($out);
}

# a good configuration passes; a world-readable key file gets a warning

my ($ok, $out) = conf_test($t, 'good.conf', conf(
	'gpt_auth_key_file good.keys; gpt_auth_cookie_domain .example.com;'
	. ' gpt_auth_cookie_max_age 12h; gpt_auth_login_url https://auth.example.com/login;',
	'gpt_auth on; gpt_auth_allowlist good.allow; gpt_auth_cookie_samesite strict;'
	. ' gpt_auth_cookie_secure off; gpt_auth_cookie_name s; gpt_auth_cookie_path /chat;'));
ok($ok, 'valid configuration passes nginx -t') or diag($out);
unlike($out, qr/readable by everyone/, 'no warning for a private key file');

($ok, $out) = conf_test($t, 'open.conf', conf('gpt_auth_key_file open.keys;', 'gpt_auth on;'));
ok($ok, 'world-readable key file still passes');
like($out, qr/\[warn\] gpt_auth: key file "\S+open\.keys" is readable by everyone; restrict it \(chmod 600\)/,
	'world-readable key file: warning');

###############################################################################
