#!/usr/bin/perl

# gpt_auth: a full quota zone. The smallest zone (32k) is filled with distinct users until
# a new user is refused: 503 for new users (fail closed, like limit_req), known users go on
# being counted, and a single [error] line says so. Users of past months make room: a zone
# filled from a state file of last month's users still admits new users.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use GptAuthQuota;
use Time::HiRes qw/ time /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;

    gpt_auth_quota_zone zone=small:32k;
    gpt_auth_quota_zone zone=stale:32k state=%%TESTDIR%%/stale.quota interval=1h;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-Day-Used "$gpt_auth_quota_day_used" always;

        location /small/ {
            gpt_auth on;
            gpt_auth_quota zone=small day=100;
            proxy_pass http://127.0.0.1:8081;
        }

        location /stale/ {
            gpt_auth on;
            gpt_auth_quota zone=stale day=100;
            proxy_pass http://127.0.0.1:8081;
        }

        location /free/ {
            gpt_auth on;
            proxy_pass http://127.0.0.1:8081;
        }

        location = /usage-small {
            gpt_auth on;
            gpt_auth_quota_report zone=small;
        }

        location = /usage-stale {
            gpt_auth on;
            gpt_auth_quota_report zone=stale;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  backend;

        location / {
            return 200 "backend\n";
        }
    }
}

EOF

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';

# last month's users, more than fit
my $last_month = periods(time())->{month} - 1;
$t->write_file('stale.quota', join('', "gpt_auth_quota 1\n",
	map { sprintf("old%05d\@example.com 1 3 %d 3\n", $_, $last_month) } 1 .. 3000));

$t->run()->plan(19);

###############################################################################

sub req {
	my ($uri, $email) = @_;
	return request($uri, cookie => cookie_for($key, $email));
}

sub user { sprintf('user%05d@example.com', $_[0]) }

# fill the zone with new users until one is refused

my ($admitted, $r) = (0);
for my $i (1 .. 5000) {
	$r = req('/small/x', user($i));
	if (status($r) != 200) {
		last;
	}
	$admitted++;
}
is(status($r), 503, "a full zone refuses a new user with 503 (after $admitted users)");
cmp_ok($admitted, '>=', 50, '32k hold a useful number of users');
is(header($r, 'X-Day-Used'), undef, 'the refused request is not charged');

my $log = log_offset($t);
my @codes = map { status(req('/small/x', user($admitted + 1 + $_))) } 1 .. 5;
is("@codes", '503 503 503 503 503', 'more new users: 503 each');
is(status(req('/free/x', user($admitted + 2))), 200,
	'a location without a budget still serves them');

$r = req('/small/x', user(1));
is(status($r), 200, 'a known user goes on');
is(header($r, 'X-Day-Used'), 2, 'and is counted');
$r = req('/small/x', user($admitted));
is(header($r, 'X-Day-Used'), 2, 'the last admitted user too');
is(log_since($t, $log), '', 'no further log lines while the zone stays full')
	or diag(log_since($t, $log));

my $j = quota_json(body(req('/usage-small?format=json', user(1)))) // {};
is(scalar @{ $j->{users} // [] }, $admitted, 'the report lists every admitted user');

# the zone of last month's users: they are dropped to make room

$log = log_offset($t);
my @ok = grep { status(req('/stale/x', "new$_\@example.com")) == 200 } 1 .. 50;
is(scalar @ok, 50, 'zone full of last month\'s users: new users admitted');
is(header(req('/stale/x', 'new1@example.com'), 'X-Day-Used'), 2, 'and counted');
$j = quota_json(body(req('/usage-stale?format=json', 'new1@example.com'))) // {};
is(scalar @{ $j->{users} // [] }, 50, 'the report shows this month\'s users only');
unlike(log_since($t, $log), qr/is full/, 'no "full" error for the zone that made room');

$t->stop();

$log = $t->read_file('error.log');
my @full = $log =~ /^(.*gpt_auth_quota_zone "small" is full.*)$/mg;
is(scalar @full, 1, 'one error line for the full zone') or diag(join("\n", @full));
like($full[0] // '', qr/\[error\] .*gpt_auth: gpt_auth_quota_zone "small" is full: no room for another user \(requests of new users are refused with 503\); make the zone larger/,
	'the error line says what happens and what to do');
unlike($log, qr/\[crit\].*ngx_slab_alloc\(\) failed: no memory/,
	'no slab allocator noise');
my ($loaded) = $log =~ /gpt_auth_quota_zone "stale": (\d+) users and groups and \d+ API keys loaded/;
ok(defined $loaded && $loaded > 0 && $loaded < 3000, 'state file: as many users loaded as fit')
	or diag($loaded // 'no "loaded" line');
unlike($log, qr/gpt_auth_quota_zone "stale" is full/, 'a full load is not a full zone');

###############################################################################
