#!/usr/bin/perl

# gpt_auth: per-user budgets (gpt_auth_quota_zone, gpt_auth_quota). Only the configured requests
# count (methods=, locations without a budget, "gpt_auth_quota off", requests nobody signed in
# to, requests limit_req refused), a request is charged once across internal redirects; 429 with
# Retry-After up to the end of the day or month (UTC, a short day, a utc_offset); a JSON body for
# API calls and a page for browser navigations; the $gpt_auth_quota_* variables; the overrides
# file and its live re-read; the usage report (gpt_auth_quota_report).
#
# Per-user rate limiting with stock `limit_req_zone $gpt_auth_email` (the README's example) is
# tested in t/gpt_auth_access.t; here only its interplay with a budget. Period resets are in
# t/gpt_auth_quota_period.t, reloads and the state file in t/gpt_auth_quota_persist.t, a full
# zone in t/gpt_auth_quota_full.t, nginx -t errors in t/gpt_auth_quota_conf.t, parallel clients
# in t/gpt_auth_quota_concurrency.t.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use GptAuthQuota;
use Time::HiRes qw/ time sleep /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy limit_req/);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;

    gpt_auth_quota_zone zone=chat:1m;
    gpt_auth_quota_zone zone=hourly:64k day_length=1h;
    gpt_auth_quota_zone zone=ist:64k utc_offset=+05:30;
    gpt_auth_quota_zone zone=rep:64k;

    limit_req_zone $gpt_auth_email zone=per_user:1m rate=1r/m;

    log_format quota '$uri $status $gpt_auth_email '
                     '"$gpt_auth_quota_day_used/$gpt_auth_quota_day_remaining" '
                     '"$gpt_auth_quota_month_used/$gpt_auth_quota_month_remaining"';

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        access_log %%TESTDIR%%/quota.log quota;

        add_header X-Day-Used "$gpt_auth_quota_day_used" always;
        add_header X-Day-Left "$gpt_auth_quota_day_remaining" always;
        add_header X-Month-Used "$gpt_auth_quota_month_used" always;
        add_header X-Month-Left "$gpt_auth_quota_month_remaining" always;

        location /api/ {
            gpt_auth on;
            gpt_auth_quota zone=chat day=3 month=100 methods=POST,PUT;
            proxy_pass http://127.0.0.1:8081;
        }

        location /free/ {
            gpt_auth on;
            proxy_pass http://127.0.0.1:8081;
        }

        location /nogate/ {
            gpt_auth_quota zone=chat day=0;
            proxy_pass http://127.0.0.1:8081;
        }

        location /all/ {
            gpt_auth on;
            gpt_auth_quota zone=chat day=2 month=unlimited;
            proxy_pass http://127.0.0.1:8081;
        }

        location /redirect/ {
            gpt_auth on;
            gpt_auth_quota zone=chat day=2;
            try_files /nonexistent @backend;
        }

        location @backend {
            gpt_auth on;
            gpt_auth_quota zone=chat day=2;
            proxy_pass http://127.0.0.1:8081;
        }

        location /hourly/ {
            gpt_auth on;
            gpt_auth_quota zone=hourly day=1 month=unlimited;
            proxy_pass http://127.0.0.1:8081;
        }

        location /monthly/ {
            gpt_auth on;
            gpt_auth_quota zone=chat day=unlimited month=1;
            proxy_pass http://127.0.0.1:8081;
        }

        location /ist/ {
            gpt_auth on;
            gpt_auth_quota zone=ist day=1;
            proxy_pass http://127.0.0.1:8081;
        }

        location /ov/ {
            gpt_auth on;
            gpt_auth_quota zone=chat day=2 month=50 overrides=%%TESTDIR%%/quota.overrides;
            proxy_pass http://127.0.0.1:8081;
        }

        location /custom/ {
            gpt_auth on;
            gpt_auth_quota zone=chat day=1;
            gpt_auth_quota_page %%TESTDIR%%/quota.html;
            proxy_pass http://127.0.0.1:8081;
        }

        location /errpage/ {
            gpt_auth on;
            gpt_auth_quota zone=chat day=1;
            error_page 429 /too_many.html;
            proxy_pass http://127.0.0.1:8081;
        }

        location = /too_many.html {
        }

        location /limited/ {
            gpt_auth on;
            limit_req zone=per_user nodelay;
            gpt_auth_quota zone=chat day=5;
            proxy_pass http://127.0.0.1:8081;
        }

        location /listed/ {
            gpt_auth on;
            gpt_auth_allowlist %%TESTDIR%%/admins.allow;
            gpt_auth_quota zone=chat day=1;
            proxy_pass http://127.0.0.1:8081;
        }

        location /rep/ {
            gpt_auth on;
            gpt_auth_quota zone=rep day=100;
            proxy_pass http://127.0.0.1:8081;
        }

        location /rep0/ {
            gpt_auth on;
            gpt_auth_quota zone=rep day=0;
            proxy_pass http://127.0.0.1:8081;
        }

        location = /usage {
            gpt_auth on;
            gpt_auth_allowlist %%TESTDIR%%/admins.allow;
            gpt_auth_quota_report zone=rep;
        }
    }

    server {
        listen       127.0.0.1:8082;
        server_name  localhost;

        add_header X-Day-Used "$gpt_auth_quota_day_used" always;

        gpt_auth_quota zone=chat day=1;

        location / {
            gpt_auth on;
            proxy_pass http://127.0.0.1:8081;
        }

        location /off/ {
            gpt_auth on;
            gpt_auth_quota off;
            proxy_pass http://127.0.0.1:8081;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  backend;

        access_log %%TESTDIR%%/backend.log;

        location / {
            return 200 "backend $request_method $uri\n";
        }
    }
}

EOF

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';
$t->write_file('admins.allow', "admin\@example.com\n");
$t->write_file('quota.overrides', <<'EOF');
# power users
Alice@Example.com  day=5 month=unlimited
@partner.example   day=1    # partners
boss@example.com   day=unlimited
zero@example.com   day=0
ovmonth@example.com day=unlimited month=3
EOF
$t->write_file('quota.html',
	"custom: {{email}} used {{used}} of {{limit}} this {{period}}; "
	. "resets {{resets}} in {{retry_after}} s ({{retry_after_text}})\n");
$t->write_file('too_many.html', "operator's own 429 page\n");

$t->run()->plan(163);

###############################################################################

my $html = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';

sub req {
	my ($uri, $email, %a) = @_;
	my $cookie = defined $email ? cookie_for($key, $email) : undef;
	return request($uri, cookie => $cookie, %a);
}

sub post {
	my ($uri, $email, %a) = @_;
	return req($uri, $email, method => 'POST', body => '{"q":1}', %a);
}

sub codes {
	my ($n, $code) = @_;
	return join(' ', map { status($code->()) } 1 .. $n);
}

# counting only the configured requests

my $u = 'counter@example.com';
my $r = post('/api/x', $u);
is(status($r), 200, 'POST counted: 200');
is(header($r, 'X-Day-Used'), 1, 'first POST: day used 1');
is(status(req('/api/x', $u, accept => $html)), 200, 'GET page load with methods=POST,PUT');
is(header(req('/api/x', $u, method => 'HEAD'), 'X-Day-Used'), undef,
	'HEAD not counted: variables empty');
is(status(req('/api/x', $u, method => 'DELETE')), 200, 'DELETE not in methods=: passes');
is(status(req('/free/x', $u, method => 'POST', body => 'x')), 200,
	'location without gpt_auth_quota: passes');
is(header(req('/free/x', $u, method => 'POST', body => 'x'), 'X-Day-Used'), undef,
	'location without gpt_auth_quota: not charged');
$r = req('/api/x', $u, method => 'PUT', body => 'x');
is(status($r), 200, 'PUT is in methods=');
is(header($r, 'X-Day-Used'), 2, 'GETs, HEADs, DELETEs and other locations did not count');
is(status(post('/api/x', $u)), 200, 'third counted request: 200 (day=3)');
$r = post('/api/x', $u);
is(status($r), 429, 'fourth counted request: 429');
is(status(req('/api/x', $u)), 200, 'GET still passes with the budget used up');
is(status(req('/free/x', $u, method => 'POST', body => 'x')), 200,
	'other locations still pass with the budget used up');

is(status(post('/api/x', undef)), 401, 'no session: 401 before any budget');
is(status(request('/api/x', method => 'POST', body => 'x',
	cookie => cookie_for($key, $u, iat => int(time()) - 60))), 429,
	'another session (cookie) of the same user: still over budget');

# a user the allowlist refuses is not charged

$r = req('/listed/x', 'outsider@example.com');
is(status($r), 403, 'not on the allowlist: 403');
is(header($r, 'X-Day-Used'), undef, 'not on the allowlist: not charged');
is(status(req('/listed/x', 'outsider@example.com')), 403, 'again 403, never 429');

# a refused POST's body is discarded: the next request on the connection is read correctly

my $cookie = cookie_for($key, $u);
$r = http("POST /api/x HTTP/1.1\r\nHost: localhost\r\nCookie: $cookie\r\n"
	. "Content-Length: 7\r\n\r\n{\"q\":1}"
	. "GET /api/y HTTP/1.1\r\nHost: localhost\r\nCookie: $cookie\r\n"
	. "Connection: close\r\n\r\n") // '';
like($r, qr{^HTTP/1\.1 429 .*\r\n\r\n\{"error":"quota_exceeded".*\n(?s:.*)HTTP/1\.1 200 .*\r\n\r\nbackend GET /api/y\n\z}s,
	'keep-alive: 429 for the POST, then the next request served');

# a location with gpt_auth_quota but no "gpt_auth on" has no user to charge

$r = post('/nogate/x', $u);
is(status($r), 200, 'no gpt_auth on: day=0 budget not applied');
is(header($r, 'X-Day-Used'), undef, 'no gpt_auth on: not charged');

# server-level budget inherited; "gpt_auth_quota off"

my $s = 'server@example.com';
is(status(req('/x', $s, port => 8082)), 200, 'server-level budget inherited: first request');
is(status(req('/x', $s, port => 8082)), 429, 'server-level budget inherited: day=1 used up');
$r = req('/off/x', $s, port => 8082);
is(status($r), 200, 'gpt_auth_quota off: passes with the budget used up');
is(header($r, 'X-Day-Used'), undef, 'gpt_auth_quota off: not charged');

# counters belong to the zone: locations sharing a zone share a user's count; the address is
# matched case-insensitively

my $sh = 'shared@example.com';
is(codes(2, sub { req('/all/x', $sh) }), '200 200', '/all/: day=2 of zone chat');
$r = post('/api/x', 'SHARED@Example.COM');
is(status($r), 200, '/api/ (day=3) lets the same user have a third request');
is(header($r, 'X-Day-Used'), 3, 'the count includes the other location\'s requests (any case)');
$r = req('/all/x', $sh);
is(status($r), 429, '/all/ is now over its day=2');
like(body($r), qr/"used":3,"limit":2/, 'refusal names the shared count and this limit');

# charged once across an internal redirect (try_files to a named location with a budget)

my $rd = 'redirect@example.com';
$r = req('/redirect/x', $rd);
is(status($r), 200, 'redirected request served by the named location');
like(body($r), qr/^backend GET \/redirect\/x$/m, 'the backend was reached');
is(header($r, 'X-Day-Used'), 1, 'charged once, not once per location');
is(header(req('/redirect/x', $rd), 'X-Day-Used'), 2, 'second request: 2');
is(status(req('/redirect/x', $rd)), 429, 'third request: over day=2');

# limit_req (preaccess) refusals are not charged

my $lim = 'limited@example.com';
$r = req('/limited/x', $lim);
is(status($r), 200, 'limit_req + budget: first request');
is(header($r, 'X-Day-Used'), 1, 'first request charged');
$r = req('/limited/x', $lim);
is(status($r), 503, 'second request refused by limit_req');
is(header($r, 'X-Day-Used'), undef, 'the limit_req refusal is not charged');

# 429: Retry-After up to the end of the period, JSON for API calls

my $d = 'json@example.com';
post('/api/x', $d) for 1 .. 3;
my $t0 = time();
$r = post('/api/x', $d);
my $t1 = time();
is(status($r), 429, 'API call over budget: 429');
is(header($r, 'Content-Type'), 'application/json', 'JSON body');
is(header($r, 'Cache-Control'), 'no-store', 'not cached');
my $j = quota_json(body($r));
ok($j, 'body parses as JSON') or diag(body($r));
$j //= {};
is($j->{error}, 'quota_exceeded', 'error: quota_exceeded');
is($j->{period}, 'day', 'period: day');
is($j->{used}, 3, 'used: 3');
is($j->{limit}, 3, 'limit: 3');
is($j->{retry_after}, header($r, 'Retry-After'), 'retry_after equals the header');
ok(retry_after_ok(header($r, 'Retry-After'), $j->{resets_at}, $t0, $t1, 'day'),
	'Retry-After: seconds to the next UTC midnight, resets_at that midnight')
	or diag(header($r, 'Retry-After') . ' ' . ($j->{resets_at} // '')
		. ' expected ~' . (periods($t1)->{day_ends} - int($t1)));
is(join(',', sort keys %$j), 'error,limit,period,resets_at,retry_after,used',
	'JSON has exactly the documented fields');

# a short day (day_length=1h): the day ends at the next full hour

my $h = 'hourly@example.com';
is(status(req('/hourly/x', $h)), 200, 'day_length=1h: first request');
$t0 = time();
$r = req('/hourly/x', $h);
$t1 = time();
is(status($r), 429, 'day_length=1h: second request over day=1');
$j = quota_json(body($r)) // {};
ok(retry_after_ok(header($r, 'Retry-After'), $j->{resets_at}, $t0, $t1, 'day',
	day_length => 3600), 'day_length=1h: Retry-After to the next full hour')
	or diag((header($r, 'Retry-After') // 'none') . ' ' . ($j->{resets_at} // ''));
cmp_ok(header($r, 'Retry-After'), '<=', 3600, 'day_length=1h: at most an hour');
like($j->{resets_at} // '', qr/T\d\d:00:00Z$/, 'resets on the hour');

# utc_offset=+05:30: the day ends at 18:30 UTC

my $ist = 'ist@example.com';
is(status(req('/ist/x', $ist)), 200, 'utc_offset: first request');
$t0 = time();
$r = req('/ist/x', $ist);
$t1 = time();
is(status($r), 429, 'utc_offset: over day=1');
$j = quota_json(body($r)) // {};
ok(retry_after_ok(header($r, 'Retry-After'), $j->{resets_at}, $t0, $t1, 'day',
	utc_offset => 5 * 3600 + 1800), 'utc_offset=+05:30: Retry-After to 18:30 UTC')
	or diag((header($r, 'Retry-After') // 'none') . ' ' . ($j->{resets_at} // ''));
like($j->{resets_at} // '', qr/T18:30:00Z$/, 'resets_at is 18:30 UTC');

# the month: Retry-After up to the first of the next month

my $mo = 'monthly@example.com';
is(status(req('/monthly/x', $mo)), 200, 'month=1: first request');
$t0 = time();
$r = req('/monthly/x', $mo);
$t1 = time();
is(status($r), 429, 'month=1: second request refused');
$j = quota_json(body($r)) // {};
is($j->{period}, 'month', 'period: month');
is("$j->{used}/$j->{limit}", '1/1', 'month: used 1 of 1');
ok(retry_after_ok(header($r, 'Retry-After'), $j->{resets_at}, $t0, $t1, 'month'),
	'month: Retry-After to the first of next month, 00:00 UTC')
	or diag((header($r, 'Retry-After') // 'none') . ' ' . ($j->{resets_at} // ''));
like($j->{resets_at} // '', qr/-01T00:00:00Z$/, 'resets_at is the first of a month');

# JSON vs HTML: browser navigations get a page

my $b = 'browser@example.com';
req('/all/x', $b) for 1 .. 2;
$t0 = time();
$r = req('/all/x', $b, accept => $html);
$t1 = time();
is(status($r), 429, 'navigation over budget: 429');
is(header($r, 'Content-Type'), 'text/html; charset=utf-8', 'navigation: html page');
ok(retry_after_ok(header($r, 'Retry-After'), undef, $t0, $t1, 'day'),
	'navigation: Retry-After too');
like(body($r), qr{You have used <b>2</b> of your <b>2</b> requests this day},
	'page says how much was used');
my $reset = format_utc(periods($t1)->{day_ends});
like(body($r), qr{reset at \Q$reset\E \(in \d+ (h \d+ min|min|s)\)}, 'page says when it resets');
like(body($r), qr{Signed in as browser\@example\.com}, 'page says who');

$r = req('/all/x', $b, accept => $html, headers => ['Sec-Fetch-Mode: navigate']);
is(status($r) . ' ' . header($r, 'Content-Type'), '429 text/html; charset=utf-8',
	'Sec-Fetch-Mode: navigate: page');
$r = req('/all/x', $b, accept => $html, headers => ['X-Requested-With: XMLHttpRequest']);
is(status($r) . ' ' . header($r, 'Content-Type'), '429 application/json', 'XHR: JSON');
$r = req('/all/x', $b, accept => $html, headers => ['Sec-Fetch-Mode: cors']);
is(status($r) . ' ' . header($r, 'Content-Type'), '429 application/json', 'fetch(): JSON');
$r = req('/all/x', $b, accept => 'application/json');
is(status($r) . ' ' . header($r, 'Content-Type'), '429 application/json',
	'Accept: application/json: JSON');
$r = req('/all/x', $b);
is(header($r, 'Content-Type'), 'application/json', 'no Accept: JSON');
$r = req('/all/x', $b, method => 'POST', body => 'x', accept => $html);
is(status($r) . ' ' . header($r, 'Content-Type'), '429 application/json',
	'a form POST accepting html: JSON (not a navigation)');
$t0 = time();
$r = req('/all/x', $b, method => 'HEAD', accept => $html);
$t1 = time();
is(status($r) . ' ' . header($r, 'Content-Type'), '429 text/html; charset=utf-8',
	'HEAD navigation: page headers');
is(body($r), '', 'HEAD: no body');
ok(retry_after_ok(header($r, 'Retry-After'), undef, $t0, $t1, 'day'),
	'HEAD: Retry-After until the day ends');

$r = req('/all/x', '<i>x@example.com') for 1 .. 3;
$r = req('/all/x', '<i>x@example.com', accept => $html);
unlike(body($r), qr/<i>/, 'address escaped in the page');
like(body($r), qr/Signed in as &lt;i&gt;x\@example\.com/, 'escaped address shown');

# gpt_auth_quota_page; error_page 429 wins

my $c = 'custom@example.com';
req('/custom/x', $c);
$t0 = time();
$r = req('/custom/x', $c, accept => $html);
$t1 = time();
is(status($r), 429, 'gpt_auth_quota_page: 429');
like(body($r), qr{^custom: custom\@example\.com used 1 of 1 this day; resets \Q$reset\E in (\d+) s \(\d+ (h \d+ min|min|s)\)$}m,
	'gpt_auth_quota_page: placeholders filled');
my ($ra) = body($r) =~ /in (\d+) s/;
is($ra, header($r, 'Retry-After'), '{{retry_after}} is the header value');
ok(retry_after_ok(header($r, 'Retry-After'), undef, $t0, $t1, 'day'),
	'gpt_auth_quota_page: Retry-After until the day ends');
is(header(req('/custom/x', $c), 'Content-Type'), 'application/json',
	'gpt_auth_quota_page: API calls still get JSON');

my $e = 'errpage@example.com';
req('/errpage/x', $e);
$r = req('/errpage/x', $e, accept => $html);
is(status($r), 429, 'error_page 429: status kept');
like(body($r), qr/operator's own 429 page/, 'error_page 429 wins over the built-in page');
$r = req('/errpage/x', $e);
like(body($r), qr/operator's own 429 page/, 'error_page 429 wins over JSON too');
ok(retry_after_ok(header($r, 'Retry-After'), undef, time() - 1, time(), 'day'),
	'error_page 429: Retry-After kept');

# the variables

my $v = 'vars@example.com';
$r = post('/api/x', $v);
is(header($r, 'X-Day-Used'), 1, '$gpt_auth_quota_day_used');
is(header($r, 'X-Day-Left'), 2, '$gpt_auth_quota_day_remaining');
is(header($r, 'X-Month-Used'), 1, '$gpt_auth_quota_month_used');
is(header($r, 'X-Month-Left'), 99, '$gpt_auth_quota_month_remaining');
post('/api/x', $v) for 1 .. 2;
$r = post('/api/x', $v);
is(status($r), 429, 'over budget');
is(join(' ', map { header($r, $_) // '-' } qw/ X-Day-Used X-Day-Left X-Month-Used X-Month-Left /),
	'3 0 3 97', 'on a 429: the counts, not incremented');
$r = req('/all/x', 'vars2@example.com');
is(header($r, 'X-Month-Left'), 'unlimited', 'month=unlimited: remaining "unlimited"');
is(header($r, 'X-Month-Used'), 1, 'month=unlimited: the month is still counted');
$r = req('/api/x', $v);
is(join(' ', map { header($r, $_) // '-' } qw/ X-Day-Used X-Day-Left X-Month-Used X-Month-Left /),
	'- - - -', 'not charged: all empty');

# the overrides file

sub ov_codes {
	my ($email, $n) = @_;
	return codes($n, sub { req('/ov/x', $email) });
}

is(ov_codes('alice@example.com', 6), '200 200 200 200 200 429',
	'per-user entry: day=5 (file entry in another case)');
$r = req('/ov/x', 'alice@example.com');
like(body($r), qr/"used":5,"limit":5/, 'alice: limit 5 in the refusal');
$r = req('/ov/x', 'ALICE@example.com', method => 'HEAD');
is(header($r, 'X-Month-Left'), 'unlimited', 'alice: month=unlimited from the file');
is(ov_codes('p1@partner.example', 2), '200 429', 'domain entry: day=1');
is(ov_codes('p2@PARTNER.example', 2), '200 429', 'domain entry: another address, any case');
is(ov_codes('x@sub.partner.example', 3), '200 200 429', 'subdomain: defaults (day=2)');
$r = req('/ov/x', 'boss@example.com') for 1 .. 12;
is(status($r), 200, 'day=unlimited: twelve requests and more');
is(header($r, 'X-Day-Left'), 'unlimited', 'day=unlimited: remaining "unlimited"');
is(header($r, 'X-Month-Left'), 38, 'boss: month from the defaults (50 - 12)');
is(ov_codes('carol@example.com', 3), '200 200 429', 'no entry: defaults (day=2)');
is(ov_codes('ovmonth@example.com', 4), '200 200 200 429', 'month=3 from the file (day unlimited)');
$r = req('/ov/x', 'ovmonth@example.com');
like(body($r), qr/"period":"month","used":3,"limit":3/, 'month=3: refused for the month');
$r = req('/ov/x', 'zero@example.com');
is(status($r), 429, 'day=0: refused from the start');
like(body($r), qr/"used":0,"limit":0/, 'day=0: used 0 of 0');

# re-read without reload: atomic replace

$t->write_file('quota.overrides.new', "carol\@example.com day=4\n\@partner.example day=3\n");
rename($t->testdir() . '/quota.overrides.new', $t->testdir() . '/quota.overrides') or die $!;
sleep(1.2);
is(ov_codes('carol@example.com', 3), '200 200 429', 'new entry: carol gets 2 more (day=4)');
is(ov_codes('p1@partner.example', 3), '200 200 429', 'changed domain entry: day=3');
$r = req('/ov/x', 'alice@example.com');
is(status($r), 429, 'removed entry: alice back to the defaults');
like(body($r), qr/"used":5,"limit":2/, 'alice: used 5 of the default 2');
is(ov_codes('boss@example.com', 1), '429', 'removed unlimited entry: boss over day=2');
is(ov_codes('zero@example.com', 3), '200 200 429', 'removed day=0 entry: defaults');

# broken: the last good version stays; then fixed by an in-place rewrite

$t->write_file('quota.overrides', "carol\@example.com day=lots\n");
sleep(1.2);
$r = req('/ov/x', 'carol@example.com');
like(body($r), qr/"used":4,"limit":4/, 'broken file: last good version kept (carol day=4)');
like(body(req('/ov/x', 'p1@partner.example')), qr/"used":3,"limit":3/,
	'broken file: domain entry kept (day=3, not the default 2)');
sleep(1.2);
req('/ov/x', 'carol@example.com');

$t->write_file('quota.overrides', "carol\@example.com day=6 # more\n");
sleep(1.2);
is(ov_codes('carol@example.com', 3), '200 200 429', 'fixed file: carol day=6');
like(body(req('/ov/x', 'p1@partner.example')), qr/"used":3,"limit":2/,
	'fixed file: partner back to the default day=2 (used 3)');

unlink($t->testdir() . '/quota.overrides');
sleep(1.2);
$r = req('/ov/x', 'carol@example.com');
like(body($r), qr/"used":6,"limit":6/, 'deleted file: last good version kept');

# the usage report

my %use = ('max@example.com' => 5, 'Amy@Example.com' => 3, 'zed@example.com' => 3,
	'<b>@example.com' => 1);
for my $who (sort keys %use) {
	is(codes($use{$who}, sub { req('/rep/x', $who) }), join(' ', ('200') x $use{$who}),
		"report zone: $who makes $use{$who} requests");
}
is(status(req('/rep0/x', 'nothing@example.com')), 429,
	'a user refused from the start (day=0) has used nothing');

my $admin = 'admin@example.com';
is(status(req('/usage', 'max@example.com')), 403, 'report: not an admin: 403');
is(status(req('/usage', undef)), 401, 'report: no session: 401');

$t0 = time();
$r = req('/usage?format=json', $admin);
$t1 = time();
is(status($r), 200, 'report ?format=json: 200');
is(header($r, 'Content-Type'), 'application/json', 'report: JSON');
$j = quota_json(body($r)) // {};
my $p = periods($t1);
is($j->{zone}, 'rep', 'report: zone');
ok(grep({ $j->{generated} eq format_utc($_) } int($t0) - 1 .. int($t1)),
	'report: generated now') or diag($j->{generated});
is($j->{day}, $p->{day_label}, 'report: day label (YYYY-MM-DD)');
is($j->{month}, $p->{month_label}, 'report: month label (YYYY-MM)');
is($j->{day_resets}, format_utc($p->{day_ends}), 'report: day_resets');
is($j->{month_resets}, format_utc($p->{month_ends}), 'report: month_resets');
is(join(' ', map { "$_->{email}:$_->{day}:$_->{month}" } @{ $j->{users} // [] }),
	'max@example.com:5:5 amy@example.com:3:3 zed@example.com:3:3 <b>@example.com:1:1',
	'report: users heaviest first, ties by address, lower-cased, unused users left out');
is(join(',', sort keys %$j), 'day,day_resets,generated,groups,month,month_resets,users,zone',
	'report: exactly the documented fields');
is(join(',', sort keys %{ $j->{users}[0] // {} }), 'day,email,models,month,usage',
	'report: user fields');
is(join(',', sort keys %{ $j->{users}[0]{usage}{month} // {} }), 'cost,input_tokens,output_tokens,requests',
	'report: usage fields');
is($j->{users}[0]{usage}{month}{requests}, $j->{users}[0]{month}, 'report: usage requests = month');

$r = req('/usage', $admin, accept => 'application/json');
is(header($r, 'Content-Type'), 'application/json', 'report with Accept: application/json: JSON');
is_deeply(quota_json(body($r))->{users}, $j->{users}, 'same users');

$r = req('/usage', $admin, accept => $html);
is(status($r), 200, 'report for a browser: 200');
is(header($r, 'Content-Type'), 'text/html; charset=utf-8', 'report: html');
my @rows = body($r) =~ m{<tr><td>([^<]*)</td><td>(\d+)</td><td>(\d+)</td></tr>}g;
is(join(' ', @rows),
	'max@example.com 5 5 amy@example.com 3 3 zed@example.com 3 3 &lt;b&gt;@example.com 1 1',
	'report html: one row per user, heaviest first, escaped');
like(body($r), qr{<th>User</th><th>Today</th><th>This month</th>}, 'report html: header row');
like(body($r), qr{Day \Q$p->{day_label}\E \(resets \Q$j->{day_resets}\E\), month \Q$p->{month_label}\E \(resets \Q$j->{month_resets}\E\)\. 4 users this month\.},
	'report html: periods and the number of users');
unlike(body($r), qr/<b>\@example/, 'report html: no raw markup from an address');

# the log

$t->stop();

my $qlog = $t->read_file('quota.log');
like($qlog, qr{^/api/x 200 vars\@example\.com "1/2" "1/99"$}m,
	'access_log shows the variables');
like($qlog, qr{^/api/x 429 vars\@example\.com "3/0" "3/97"$}m, 'access_log of a 429');
like($qlog, qr{^/all/x 200 vars2\@example\.com "1/1" "1/unlimited"$}m,
	'access_log: unlimited');

my $blog = $t->read_file('backend.log');
my $n = () = $blog =~ m{"POST /api/x }g;
is($n, 2 + 1 + 3 + 3, 'the backend saw only the POSTs within budget');

my $log = $t->read_file('error.log');
like($log, qr/\[info\] .*gpt_auth: quota exceeded: "counter\@example\.com" used 3 of 3 requests this day \(zone "chat"\)/,
	'info line for a refusal');
like($log, qr/\[info\] .*gpt_auth: quota exceeded: "monthly\@example\.com" used 1 of 1 requests this month \(zone "chat"\)/,
	'info line for a month refusal');
like($log, qr/\[notice\] .*gpt_auth: quota overrides "\S+quota\.overrides" re-read: 2 entries \(was 5\)/,
	'notice on re-read');
like($log, qr/\[error\] .*gpt_auth: quota overrides "\S+quota\.overrides": line 1: "day=lots": expected a number or "unlimited"; keeping the last good list \(2 entries\)/,
	'error for a broken file names the line');
my @broken = ($log =~ /"day=lots": expected a number/g);
is(scalar @broken, 1, 'a broken file is reported once');
like($log, qr/\[error\] .*gpt_auth: quota overrides "\S+quota\.overrides" \(2: No such file or directory\); keeping the last good list \(1 entries\)/,
	'error for a deleted file');

###############################################################################
