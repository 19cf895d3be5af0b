#!/usr/bin/perl

# gpt_auth: budgets start again at period boundaries, exactly once. A short day
# (day_length=3s) for the day; one-second days for a month (calendar months of such days, some
# 30 seconds), so a month boundary is reached within the test. The usage report across a day
# boundary.

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

my $t = Test::Nginx->new()->has(qw/http proxy/);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;

    gpt_auth_quota_zone zone=short:64k day_length=3s;
    gpt_auth_quota_zone zone=tiny:64k day_length=1s;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-Day-Used "$gpt_auth_quota_day_used" always;
        add_header X-Month-Used "$gpt_auth_quota_month_used" always;

        location /day/ {
            gpt_auth on;
            gpt_auth_quota zone=short day=3 month=unlimited;
            proxy_pass http://127.0.0.1:8081;
        }

        location /month/ {
            gpt_auth on;
            gpt_auth_quota zone=tiny day=unlimited month=2;
            proxy_pass http://127.0.0.1:8081;
        }

        location = /usage {
            gpt_auth on;
            gpt_auth_quota_report zone=short;
        }

        location = /usage-tiny {
            gpt_auth on;
            gpt_auth_quota_report zone=tiny;
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

$t->run()->plan(25);

###############################################################################

my %short = (day_length => 3);
my %tiny = (day_length => 1);

sub req {
	my ($uri, $email, %a) = @_;
	return request($uri, cookie => cookie_for($key, $email), %a);
}

sub used {
	my ($r) = @_;
	return status($r) . ' ' . (header($r, 'X-Day-Used') // '-') . '/'
		. (header($r, 'X-Month-Used') // '-');
}

# the day: exhaust, wait for the boundary, the count starts again once

my $u = 'day@example.com';

# start right after a boundary, so the whole exchange fits in one 3-second day
wait_until(periods(time(), %short)->{day_ends}, 0.05);
my $p0 = periods(time(), %short);

my @r = map { used(req('/day/x', $u)) } 1 .. 3;
is("@r", '200 1/1 200 2/2 200 3/3', 'day_length=3s: three requests in the day');
my $t0 = time();
my $r = req('/day/x', $u);
my $t1 = time();
is(status($r), 429, 'the fourth is refused');
my $j = quota_json(body($r)) // {};
ok(retry_after_ok(header($r, 'Retry-After'), $j->{resets_at}, $t0, $t1, 'day', %short),
	'Retry-After: to the end of the 3-second day')
	or diag((header($r, 'Retry-After') // 'none') . ' ' . ($j->{resets_at} // ''));
is(periods(time(), %short)->{day}, $p0->{day}, 'all of that within one day')
	or diag('the machine is too slow for a 3-second day');

# next day: the same month most of the time (a month is some 90 seconds of 3-second days)

wait_until($p0->{day_ends});
my $p1 = periods(time(), %short);
my $m = $p1->{month} == $p0->{month} ? 3 : 0;
@r = map { used(req('/day/x', $u)) } 1 .. 4;
is("@r", join(' ', '200 1/' . ($m + 1), '200 2/' . ($m + 2), '200 3/' . ($m + 3), '429 3/' . ($m + 3)),
	'next day: counting starts again from 1, once; the month goes on');
is(periods(time(), %short)->{day}, $p1->{day}, 'within one day again');

# a day without requests, then another one: still a single reset

wait_until($p1->{day_ends} + 3);
my $p3 = periods(time(), %short);
@r = map { my $x = req('/day/x', $u); status($x) . ' ' . header($x, 'X-Day-Used') } 1 .. 4;
is("@r", '200 1 200 2 200 3 429 3', 'two days later: counted from 1 up to the budget, once');

# the report across the day boundary: yesterday's users show 0 today, their month count stays

my $v = 'report@example.com';
wait_until($p3->{day_ends}, 0.05);
my $p4 = periods(time(), %short);
req('/day/x', $v) for 1 .. 2;
$j = quota_json(body(req('/usage?format=json', $v))) // {};
my ($row) = grep { $_->{email} eq $v } @{ $j->{users} // [] };
is($row && "$row->{day}/$row->{month}", '2/2', 'report: 2 today');
is($j->{day}, $p4->{day_label}, 'report: the short day\'s label');
is($j->{day_resets}, format_utc($p4->{day_ends}), 'report: day_resets 3 seconds apart');
wait_until($p4->{day_ends});
my $p5 = periods(time(), %short);
$j = quota_json(body(req('/usage?format=json', $v))) // {};
($row) = grep { $_->{email} eq $v } @{ $j->{users} // [] };
if ($p5->{month} == $p4->{month}) {
	is($row && "$row->{day}/$row->{month}", '0/2', 'report next day: 0 today, 2 this month');
} else {
	ok(!$row, 'report next month: the user is gone');
}
is($j->{day}, $p5->{day_label}, 'report: the next day\'s label');

# the month (calendar months of 1-second days): exhaust, wait for the first of the next month

my $mu = 'month@example.com';

# not too close to the end of a month: the two requests and the refusal must fit in one
my $pm = periods(time(), %tiny);
wait_until($pm->{month_ends}, 0.05) if $pm->{month_ends} - time() < 2;
$pm = periods(time(), %tiny);

@r = map { status(req('/month/x', $mu)) } 1 .. 2;
is("@r", '200 200', 'month=2: two requests');
$t0 = time();
$r = req('/month/x', $mu);
$t1 = time();
is(status($r), 429, 'month=2: the third is refused');
$j = quota_json(body($r)) // {};
is($j->{period}, 'month', 'period: month');
ok(retry_after_ok(header($r, 'Retry-After'), $j->{resets_at}, $t0, $t1, 'month', %tiny),
	'Retry-After: to the first day of the next month')
	or diag((header($r, 'Retry-After') // 'none') . ' ' . ($j->{resets_at} // '')
		. ' expected ~' . ($pm->{month_ends} - int($t1)));
cmp_ok(header($r, 'Retry-After'), '<=', 31, 'a month of 1-second days is at most 31 seconds');
is(periods(time(), %tiny)->{month}, $pm->{month}, 'all of that within one month');

my $jr = quota_json(body(req('/usage-tiny?format=json', $mu))) // {};
is($jr->{month}, $pm->{month_label}, 'report: the month label (year and all)');
is($jr->{month_resets}, format_utc($pm->{month_ends}), 'report: month_resets');

# wait for the next month; a request just before it is still refused

wait_until($pm->{month_ends}, -0.7);
is(status(req('/month/x', $mu)), 429, 'just before the month ends: still refused');
wait_until($pm->{month_ends});
my $pn = periods(time(), %tiny);
$r = req('/month/x', $mu);
is(status($r) . ' ' . header($r, 'X-Month-Used'), '200 1', 'next month: counting starts again');
$r = req('/month/x', $mu);
is(status($r) . ' ' . header($r, 'X-Month-Used'), '200 2', 'second request of the new month: 2');
is(status(req('/month/x', $mu)), 429, 'and the third refused: reset once, not again');
is(periods(time(), %tiny)->{month}, $pn->{month}, 'all of that within the new month');

###############################################################################
