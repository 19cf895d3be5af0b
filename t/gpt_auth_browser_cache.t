#!/usr/bin/perl

# gpt_auth: after a logout, Chromium does not show a protected page again from its cache. The
# application marks its page cacheable for an hour (Cache-Control: max-age=3600, and it was
# last changed long ago); the module's Cache-Control (private, no-store for pages) keeps it out
# of the browser's cache, so Back and a new visit after logout ask nginx, which sends the
# browser to the login page. The same run with `gpt_auth_cache_control off` shows that the test
# can fail: then Chromium shows the page from its cache, without asking nginx.
# The logout happens elsewhere (the session cookie simply goes, as after a logout at the login
# site on another origin), so that the login site's Clear-Site-Data does not help here.
# Plain http on localhost: Chromium's HTTP cache keeps nothing from a site with a certificate
# error, so the TLS end-to-end test cannot show this.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use GptAuthOidc;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my %peers = require_peers(chromium => 1);
my $repo = repo_dir();

my $t = Test::Nginx->new()->has(qw/http/);
my $d = $t->testdir();
my $CONTENT = 'Protected chat page';

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_cookie_secure off;
    gpt_auth_login_url /login-page;

    log_format cache '$uri $status';

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;
        root %%TESTDIR%%/html;
        access_log %%TESTDIR%%/requests.log cache;

        location /app/ {
            gpt_auth on;
            add_header Cache-Control "max-age=3600";
        }

        location /app-off/ {
            gpt_auth on;
            gpt_auth_cache_control off;
            add_header Cache-Control "max-age=3600";
            alias %%TESTDIR%%/html/app/;
        }

        location = /logout {
            gpt_auth_logout;
        }

        location = /login-page {
            default_type text/html;
            return 200 "<!DOCTYPE html><h1>Sign in</h1>";
        }
    }
}

EOF

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, "$d/keys";
mkdir("$d/html");
mkdir("$d/html/app");
$t->write_file('html/app/page.html', "<!DOCTYPE html><title>Chat</title><h1>$CONTENT</h1>\n");
utime(1577836800, 1577836800, "$d/html/app/page.html");
$t->run()->plan(11);

my $cookie = 'gpt_auth=' . mint_cookie(key => $key, email => 'alice@example.com');
my $base = 'http://localhost:' . port(8080);

my sub drive {
	my ($prefix) = @_;
	my $out = `"$peers{node}" "$repo/t/e2e/cache-after-logout.mjs" --base $base --cookie '$cookie' --content '$CONTENT' --chromium "$peers{chromium}" --prefix $prefix --logout-by cookies 2>&1`;
	return ($? >> 8, $out);
}

# With the module's Cache-Control (the default)
my ($rc, $out) = drive('app');
is($rc, 0, 'driver ran') or diag($out);
like($out, qr/^header Cache-Control: private, no-store, max-age=3600$/m,
	'the page is sent with private, no-store (and the application\'s max-age)') or diag($out);
like($out, qr/^step signed-in: shown/m, 'signed in: the page is shown') or diag($out);
like($out, qr/^step back: not shown at \Q$base\E\/login-page\?rd=/m,
	'after logout, Back asks nginx again and ends on the login page') or diag($out);
like($out, qr/^step again: not shown at \Q$base\E\/login-page\?rd=/m,
	'after logout, a new visit ends on the login page') or diag($out);

# The control: without it, the browser shows the page from its cache after logout
($rc, $out) = drive('app-off');
is($rc, 0, 'control run: driver ran') or diag($out);
like($out, qr/^header Cache-Control: max-age=3600$/m, 'control: only the application\'s header')
	or diag($out);
like($out, qr/^step signed-in: shown/m, 'control: signed in, shown') or diag($out);
like($out, qr/^step again: shown at \Q$base\E\/app-off\/page\.html$/m,
	'control: without it, Chromium shows the page from its cache after logout (the test can fail)')
	or diag($out);

$t->stop();
my @requests = split /\n/, $t->read_file('requests.log');
is(scalar(grep { m{^/app/page\.html 302$} } @requests), 2,
	'with the module: both visits after logout reached nginx (302 to the login page)');
is(scalar(grep { m{^/app/page\.html } } @requests), 3, 'with the module: three requests for the page');

###############################################################################
