#!/usr/bin/perl

# gpt_auth: the access check among nginx's other access modules and subrequests.
# satisfy any/all with allow/deny and auth_basic; the user passed upstream with
# proxy_set_header (overriding a forged client header); the main request's user in SSI,
# auth_request and mirror subrequests; per-user rate limiting with limit_req_zone.

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

my $t = Test::Nginx->new()->has(qw/http proxy ssi auth_request mirror limit_req access auth_basic/);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_login_url http://auth.example.com/login;

    limit_req_zone $gpt_auth_email zone=per_user:1m rate=1r/m;
    log_format backend '$uri "$http_x_email"';

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location /office/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            gpt_auth on;
        }

        location /remote/ {
            satisfy any;
            allow 10.0.0.0/8;
            deny all;
            gpt_auth on;
        }

        location /strict/ {
            satisfy all;
            allow 10.0.0.0/8;
            deny all;
            gpt_auth on;
        }

        location /basic/ {
            satisfy any;
            auth_basic "staff";
            auth_basic_user_file %%TESTDIR%%/htpasswd;
            gpt_auth on;
        }

        location /app/ {
            gpt_auth on;
            proxy_pass http://127.0.0.1:8081/echo;
            proxy_set_header X-Email $gpt_auth_email;
        }

        location /ssi/ {
            gpt_auth on;
            ssi on;
        }

        location /sub/ {
            proxy_pass http://127.0.0.1:8081/echo;
            proxy_set_header X-Email $gpt_auth_email;
        }

        location /ar/ {
            gpt_auth on;
            auth_request /authz;
        }

        location = /authz {
            internal;
            proxy_pass http://127.0.0.1:8081/authz;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Email $gpt_auth_email;
        }

        location /mirrored/ {
            gpt_auth on;
            mirror /mirror;
        }

        location = /mirror {
            internal;
            proxy_pass http://127.0.0.1:8081/mirror;
            proxy_set_header X-Email $gpt_auth_email;
        }

        location /limited/ {
            gpt_auth on;
            limit_req zone=per_user burst=1 nodelay;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  backend;

        access_log %%TESTDIR%%/backend.log backend;

        location /echo {
            return 200 "user=$http_x_email\n";
        }

        location /authz {
            if ($http_x_email = "alice@example.com") {
                return 204;
            }
            return 403;
        }

        location /mirror {
            return 204;
        }
    }
}

EOF

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . "/keys";
$t->write_file('htpasswd', "staff:{PLAIN}secret\n");
for my $d (qw/ office remote strict basic ssi ar mirrored limited /) {
	mkdir($t->testdir() . "/$d");
	$t->write_file("$d/index.html", "$d page");
}
$t->write_file('ssi/page.html',
	'before <!--# include virtual="/sub/x" --> after');

$t->run()->plan(30);

###############################################################################

my $html = 'text/html';
my $alice = 'gpt_auth=' . mint_cookie(key => $key, email => 'alice@example.com');
my $bob = 'gpt_auth=' . mint_cookie(key => $key, email => 'bob@example.com');

# satisfy any: the office network needs no cookie; others are sent to the login page

is(status(request('/office/')), 200, 'satisfy any, allowed address: no cookie needed');
is(status(request('/remote/', accept => $html)), 302,
	'satisfy any, other address, browser: redirect to login');
is(status(request('/remote/')), 401, 'satisfy any, other address, API: 401');
is(status(request('/remote/', cookie => $alice)), 200, 'satisfy any, other address, cookie: 200');

# satisfy all: both must agree

is(status(request('/strict/', cookie => $alice)), 403, 'satisfy all, denied address: 403');
is(status(request('/strict/', accept => $html)), 403,
	'satisfy all: deny is checked before the login redirect');

# satisfy any with auth_basic

my $basic = 'Authorization: Basic ' . encode_base64('staff:secret', '');
is(status(request('/basic/', headers => [$basic])), 200, 'auth_basic credentials: 200');
is(status(request('/basic/', cookie => $alice)), 200, 'or a session cookie: 200');
my $r = request('/basic/');
is(status($r), 401, 'neither: 401');
like(header($r, 'WWW-Authenticate') // '', qr/Basic realm="staff"/,
	'auth_basic challenge kept');
is(status(request('/basic/', accept => $html)), 302, 'neither, browser: login redirect');

# the user upstream; a forged client header cannot impersonate anyone

$r = request('/app/x', cookie => $alice, headers => ['X-Email: eve@evil.com']);
is(status($r), 200, 'proxied with a session');
like(body($r), qr/^user=alice\@example\.com$/m, 'proxy_set_header passes $gpt_auth_email');
is(status(request('/app/x', headers => ['X-Email: alice@example.com'])), 401,
	'forged X-Email without a session: refused, upstream not reached');

# subrequests see the main request's user and are not re-checked

$r = request('/ssi/page.html', cookie => $alice);
is(status($r), 200, 'ssi page with a session');
like(body($r), qr/before user=alice\@example\.com\n after/, 'SSI subrequest sees the user');
is(status(request('/ssi/page.html')), 401, 'ssi page without a session: 401');

is(status(request('/ar/', cookie => $alice)), 200,
	'auth_request subrequest sees the user (backend admits alice)');
is(status(request('/ar/', cookie => $bob)), 403,
	'auth_request subrequest sees the user (backend refuses bob)');
is(status(request('/ar/')), 403, 'auth_request refuses before the session check (satisfy all)');

is(status(request('/mirrored/', cookie => $alice)), 200, 'mirrored request with a session');

# per-user rate limit: the variable is ready in the preaccess phase

is(status(request('/limited/', cookie => $alice)), 200, 'alice request 1');
is(status(request('/limited/', cookie => $alice)), 200, 'alice request 2 (burst)');
is(status(request('/limited/', cookie => $alice)), 503, 'alice request 3: limited');
is(status(request('/limited/', cookie => $bob)), 200, 'bob has his own budget');
is(status(request('/limited/', cookie => $bob)), 200, 'bob request 2 (burst)');
is(status(request('/limited/', cookie => $bob)), 503, 'bob request 3: limited');

$t->stop();

my $blog = $t->read_file('backend.log');
like($blog, qr{^/mirror "alice\@example\.com"$}m, 'mirror subrequest sees the user');
unlike($blog, qr{eve\@evil\.com}, 'the forged header never reached the backend');
my $n = () = $blog =~ m{^/echo}mg;
is($n, 2, 'backend reached only by the two authenticated requests');

###############################################################################
