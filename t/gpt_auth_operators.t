#!/usr/bin/perl

# gpt_auth: mistakes caught by `nginx -t` (a login site without the fetch snippet, a provider
# reached by host name without a resolver, a relative login URL, an allowlist the workers cannot
# read), and the answers operators see: the JSON 401 with WWW-Authenticate, the 403 "not allowed
# here" page, Cache-Control on protected responses.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/);
my $d = $t->testdir();
# The test directory is private to root; the readability check needs a path that is not.
chmod 0755, $d;

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, "$d/keys";
$t->write_file('secret', "s3cret\n");
$t->write_file('all.allow', "\@example.com\n");
$t->write_file('gpt4.allow', "alice\@example.com\n");
{
	open(my $fh, '<', "$FindBin::Bin/../crates/gpt-auth-core/tests/fixtures/jwks.json") or die $!;
	local $/;
	$t->write_file('jwks.json', <$fh>);
}
$t->write_file('index.html', 'start page');
mkdir("$d/gpt4");
$t->write_file('gpt4/index.html', 'gpt4 page');
$t->write_file('gpt4/data.json', '{"ok":1}');
mkdir("$d/api");
$t->write_file('api/x', 'api answer');
mkdir("$d/private");
$t->write_file('private/list.allow', "alice\@example.com\n");
chmod 0700, "$d/private";

my $FETCH = 'location = /_gpt_auth_fetch { internal; proxy_pass $gpt_auth_fetch_url; }';

# (name, http-level directives, server-level directives, login location directives,
#  expected: qr for a failing nginx -t, or [qr warn lines that must appear, qr that must not])
my @cases = (
	['login site without the fetch snippet',
		'gpt_auth_provider idp { issuer https://idp.example; client_id c; client_secret_file secret; }',
		'', 'gpt_auth_login idp;',
		qr/\[emerg\] gpt_auth: "gpt_auth_login" in \S+:\d+: provider "idp" fetches through the internal location "\/_gpt_auth_fetch", which this server does not have; add "include \/etc\/nginx\/snippets\/gpt_auth_fetch\.conf;" to the server block/],
	['callback without the fetch snippet',
		'gpt_auth_provider idp { issuer https://idp.example; client_id c; client_secret_file secret; }',
		'', 'gpt_auth_callback;',
		qr/\[emerg\] gpt_auth: "gpt_auth_callback" in \S+:\d+: provider "idp" fetches through the internal location "\/_gpt_auth_fetch"/],
	['a location / does not count as the fetch location',
		'gpt_auth_provider idp { issuer https://idp.example; client_id c; client_secret_file secret; }',
		'location /_gpt_auth { proxy_pass http://127.0.0.1:1; }', 'gpt_auth_login idp;',
		qr/provider "idp" fetches through the internal location "\/_gpt_auth_fetch", which this server does not have/],
	['another fetch_location is looked for by its name',
		'gpt_auth_provider idp { issuer https://idp.example; client_id c; client_secret_file secret; fetch_location /_other; }',
		$FETCH, 'gpt_auth_login idp;',
		qr/fetches through the internal location "\/_other"/],
	['relative login URL',
		'gpt_auth_login_url auth.example.com/login;', '', '',
		qr/\[emerg\] "gpt_auth_login_url" directive invalid URL "auth\.example\.com\/login" \(an absolute http\(s\) URL or a path starting with "\/"\)/],
	['host name without a resolver: warning',
		'gpt_auth_provider idp { issuer https://idp.example; client_id c; client_secret_file secret; }',
		$FETCH, 'gpt_auth_login idp;',
		[qr/\[warn\] gpt_auth: provider "idp" is reached by host name \("idp\.example"\) but no "resolver" applies to location "\/_gpt_auth_fetch": every sign-in will fail with 502/]],
	['host name with a resolver: no warning',
		'resolver 127.0.0.1; gpt_auth_provider idp { issuer https://idp.example; client_id c; client_secret_file secret; }',
		$FETCH, 'gpt_auth_login idp;',
		[undef, qr/resolver/]],
	['IP address: no resolver needed',
		'gpt_auth_provider idp { issuer http://127.0.0.1:9; client_id c; client_secret_file secret; }',
		$FETCH, 'gpt_auth_login idp;',
		[undef, qr/resolver|\[warn\]/]],
	['fetch location not internal: warning',
		'gpt_auth_provider idp { issuer http://127.0.0.1:9; client_id c; client_secret_file secret; }',
		'location = /_gpt_auth_fetch { proxy_pass $gpt_auth_fetch_url; }', 'gpt_auth_login idp;',
		[qr/\[warn\] gpt_auth: location "\/_gpt_auth_fetch" \(fetches of provider "idp"\) is not "internal"/]],
	['GSI with a local key set fetches nothing: no snippet needed',
		'gpt_auth_provider g { issuer https://accounts.google.com; client_id c; gsi on; jwks_file jwks.json; }',
		'', 'gpt_auth_login g;',
		[undef, qr/fetch/]],
	['login URL starting with a variable is taken',
		'gpt_auth_login_url $scheme://auth.example.com/login;', '', '',
		[undef, qr/login_url/]],
);

$t->plan(2 * @cases + 4 + 20 + 7);

sub conf {
	my ($http, $server, $loc, $globals) = @_;
	$globals //= '%%TEST_GLOBALS%%';
	return <<"EOF";
$globals
daemon off;
events {
}
http {
    %%TEST_GLOBALS_HTTP%%
    gpt_auth_key_file keys;
    $http
    server {
        listen 127.0.0.1:8080;
        server_name auth.example.com;
        $server
        location /login {
            $loc
        }
    }
}
EOF
}

my $i = 0;
for my $c (@cases) {
	my ($name, $http, $server, $loc, $want) = @$c;
	my ($ok, $out) = conf_test($t, 'case' . $i++ . '.conf', conf($http, $server, $loc));
	if (ref $want eq 'Regexp') {
		ok(!$ok, "$name: nginx -t fails");
		like($out, $want, "$name: message") or diag($out);
	} else {
		ok($ok, "$name: nginx -t passes") or diag($out);
		my ($must, $mustnot) = @$want;
		if ($must) {
			like($out, $must, "$name: warned") or diag($out);
		} else {
			unlike($out, $mustnot, "$name: no warning") or diag($out);
		}
	}
}

# an allowlist the workers cannot read (as the worker user "nobody": a 0700 directory of root)

my $module = ($ENV{TEST_NGINX_GLOBALS} // '') =~ /(load_module\s+\S+;)/ ? $1 : '';
SKIP: {
	skip 'only root can configure another worker user', 4 if $> != 0;
	my ($ok, $out) = conf_test($t, 'unreadable.conf',
		conf('', '', "gpt_auth on; gpt_auth_allowlist private/list.allow;",
			"$module\nuser nobody nogroup;"));
	ok($ok, 'allowlist the workers cannot read: nginx -t still passes') or diag($out);
	like($out, qr/\[warn\] gpt_auth: allowlist "\S+private\/list\.allow" is not readable by the worker user \(uid \d+\): directory "\S+private" is not searchable for it; workers will not pick up changes to it until it is/,
		'allowlist the workers cannot read: warned at nginx -t');
	($ok, $out) = conf_test($t, 'readable.conf',
		conf('', '', "gpt_auth on; gpt_auth_allowlist all.allow;", "$module\nuser nobody nogroup;"));
	ok($ok, 'readable allowlist passes') or diag($out);
	unlike($out, qr/not readable/, 'readable allowlist: no warning');
}

###############################################################################
# the running answers

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_login_url http://auth.example.com/login;
    gpt_auth_logout_url http://auth.example.com/logout;

    gpt_auth_provider idp {
        issuer http://127.0.0.1:9;
        client_id c;
        client_secret_file %%TESTDIR%%/secret;
    }

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location / {
            gpt_auth on;
        }

        location /gpt4/ {
            gpt_auth on;
            gpt_auth_allowlist %%TESTDIR%%/gpt4.allow;
        }

        location /api/ {
            gpt_auth on;
            gpt_auth_login_url off;
        }

        location /upstream/ {
            gpt_auth on;
            proxy_pass http://127.0.0.1:8080/origin/;
        }

        location /own/ {
            gpt_auth on;
            gpt_auth_cache_control off;
            proxy_pass http://127.0.0.1:8080/origin/;
        }

        location /origin/ {
            add_header Cache-Control "public, max-age=600, s-maxage=3600";
            return 200 "origin";
        }

        location /custom401/ {
            gpt_auth on;
            error_page 401 = @login;
        }

        location @login {
            return 401 "custom";
        }

        # A login site on plain http with Secure cookies (the default).
        location = /login {
            gpt_auth_login idp;
        }

        location = /callback {
            gpt_auth_callback;
        }

        location = /_gpt_auth_fetch {
            internal;
            proxy_pass $gpt_auth_fetch_url;
        }
    }
}

EOF

$t->run();

my $alice = 'gpt_auth=' . mint_cookie(key => $key, email => 'alice@example.com');
my $bob = 'gpt_auth=' . mint_cookie(key => $key, email => 'bob@example.com');
my $html = 'text/html,application/xhtml+xml';

# 401 for API clients: a challenge and a small JSON body

my $r = request('/api/x');
is(status($r), 401, 'no session: 401');
is(header($r, 'WWW-Authenticate'), 'Bearer realm="gpt_auth"', 'no session: WWW-Authenticate');
is(header($r, 'Content-Type'), 'application/json', 'no session: JSON');
is(body($r), qq({"error":"unauthenticated","reason":"missing","message":"sign in first"}\n),
	'no session: the JSON body');

$r = request('/x.json', cookie => 'gpt_auth=1.AAAAAAAAAAA.1.2.YQ.bad');
is(header($r, 'WWW-Authenticate'), 'Bearer realm="gpt_auth", error="invalid_token"',
	'refused cookie: invalid_token');
is(body($r), qq({"error":"unauthenticated","reason":"invalid","message":"sign in first","login_url":"http://auth.example.com/login"}\n),
	'refused cookie: the reason and where to sign in');

$r = request('/custom401/x');
is(status($r), 401, 'error_page 401: status');
is(body($r), 'custom', 'error_page 401: the operator\'s page wins');

is(status(request('/page', accept => $html)), 302, 'browsers still go to the login page');

# 403: not allowed here, with a way back and another account

$r = request('/gpt4/', cookie => $bob, accept => $html);
is(status($r), 403, 'not on the location\'s list: 403');
like(body($r), qr{You are signed in as <b>bob\@example\.com</b>, but this account is not allowed here\.},
	'403 says "not allowed here"');
like(body($r), qr{<p><a href="http://auth\.example\.com/login\?rd=http%3A%2F%2Flocalhost%2Fgpt4%2F&amp;switch=1">Sign in with another account</a></p>},
	'403: sign in with another account, back to this page');
like(body($r), qr{<p><a href="/">Back to the start page</a></p>}, '403: a way back');
like(body($r), qr{<p><a class="button" href="http://auth\.example\.com/logout">Sign out</a></p>},
	'403: sign out');

# Cache-Control on protected responses

$r = request('/gpt4/', cookie => $alice);
is(header($r, 'Cache-Control'), 'private, no-store', 'protected page: private, no-store');
$r = request('/gpt4/data.json', cookie => $alice);
is(header($r, 'Cache-Control'), 'private', 'protected data: private');
$r = request('/upstream/', cookie => $alice);
is(body($r), 'origin', 'proxied: body');
is(join('|', headers($r, 'Cache-Control')), 'private, max-age=600',
	'proxied: public and s-maxage replaced by private, max-age kept, one header');
$r = request('/own/', cookie => $alice);
is(join('|', headers($r, 'Cache-Control')), 'public, max-age=600, s-maxage=3600',
	'gpt_auth_cache_control off: the upstream\'s header untouched');
$r = request('/origin/');
is(header($r, 'Cache-Control'), 'public, max-age=600, s-maxage=3600',
	'unprotected location: untouched');

# plain http with Secure cookies: the login page and the callback say why sign-in cannot work

my $warning = qr{<p class="warning">This sign-in page is served over plain http, but its cookies are marked Secure};
$r = request('/login', host => 'auth.example.com');
is(status($r), 200, 'plain http, Secure cookies: login page');
like(body($r), $warning, 'plain http, Secure cookies: the page says so');
unlike(body(request('/login', host => 'localhost:8080')), $warning,
	'on localhost (browsers keep Secure cookies there): no warning');
unlike(body(request('/login', host => 'auth.example.com', headers => ['X-Forwarded-Proto: https'])),
	$warning, 'behind a TLS proxy: no warning');
$r = request('/callback?state=AAAAAAAAAAAAAAAAAAAAAA&code=c', host => 'auth.example.com');
is(status($r), 400, 'plain http, Secure cookies: callback without its state cookie: 400');
like(body($r), qr{<h1>Sign-in cannot work here</h1>}, 'callback: the reason, not "expired"');
$t->stop();
my @lines = $t->read_file('error.log') =~ /(\[error\].*gpt_auth: the login site is served over plain http but "gpt_auth_cookie_secure" is on.*)/g;
is(join(' ', map { /request: "GET (\/\w+)/ ? $1 : '?' } @lines), '/login /callback',
	'plain http, Secure cookies: one [error] line per worker and location');

###############################################################################
