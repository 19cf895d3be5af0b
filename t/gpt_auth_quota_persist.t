#!/usr/bin/perl

# gpt_auth: budgets survive. Counters carry on across `nginx -s reload` (the shared zone is
# reused, with or without a state file, also when the budgets change; a zone whose size changed
# is new and takes the counters of the old one); with state=, worker 0 writes them every interval
# and at exit, by replacing the file, in the documented format (`gpt_auth_quota 3`, then
# `<key> <day> <month>` and the amounts), and a new nginx reads them back (version 1 too): a full
# restart does not hand out fresh budgets. Entries of past days and months; missing, broken and
# unwritable state files.

###############################################################################

# A state file line (version 3) of a user with only requests counted (the zones here have no
# Redis: each charge also counts as unsent and as this node's own, so the line has the requests
# three times).
sub v3 {
	my ($email, $day, $dreq, $month, $mreq) = @_;
	return "$email $day $month $dreq 0 0 0 $mreq 0 0 0" . (' 0' x 8)
		. " $dreq 0 0 0 $mreq 0 0 0" x 2;
}

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
my $dir = $t->testdir();

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    gpt_auth_key_file %%TESTDIR%%/keys;

    gpt_auth_quota_zone zone=kept:%%SIZE%% state=%%TESTDIR%%/kept.quota interval=1s;
    gpt_auth_quota_zone zone=atexit:1m state=atexit.quota interval=1h;
    gpt_auth_quota_zone zone=plain:1m;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-Day-Used "$gpt_auth_quota_day_used" always;
        add_header X-Month-Used "$gpt_auth_quota_month_used" always;

        location /kept/ {
            gpt_auth on;
            gpt_auth_quota zone=kept day=%%DAY%% month=100;
            proxy_pass http://127.0.0.1:8081;
        }

        location /atexit/ {
            gpt_auth on;
            gpt_auth_quota zone=atexit day=100;
            proxy_pass http://127.0.0.1:8081;
        }

        location = /usage {
            gpt_auth on;
            gpt_auth_quota_report zone=kept;
        }

        location /plain/ {
            gpt_auth on;
            gpt_auth_quota zone=plain day=%%DAY%%;
            proxy_pass http://127.0.0.1:8081;
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

my sub write_conf {
	my ($day, $size) = @_;
	$size //= '1m';
	(my $c = $conf) =~ s/%%DAY%%/$day/g;
	$c =~ s/%%SIZE%%/$size/g;
	$t->write_file_expand('nginx.conf', $c);
}

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, "$dir/keys";
write_conf(10);

$t->run()->plan(43);

###############################################################################

sub req {
	my ($uri, $email) = @_;
	return request($uri, cookie => cookie_for($key, $email));
}

sub used {
	my ($uri, $email) = @_;
	my $r = req($uri, $email);
	return status($r) . ' ' . (header($r, 'X-Day-Used') // '-') . '/'
		. (header($r, 'X-Month-Used') // '-');
}

my sub state_lines {
	my ($name) = @_;
	my $text = eval { $t->read_file($name) } // '';
	return split /\n/, $text;
}

my ($alice, $bob) = ('alice@example.com', 'Bob@Example.com');

# a first start without a state file: nothing to load, nothing to complain about

my $log = 0;	# the whole log: the start-up (loading the state files) included
my $p = periods(time());

req('/kept/x', $alice) for 1 .. 3;
req('/kept/x', $bob) for 1 .. 2;
req('/plain/x', $alice) for 1 .. 2;
req('/atexit/x', $alice) for 1 .. 4;
is(used('/kept/x', $alice), '200 4/4', 'kept: alice has 4');

# the periodic write

sleep(1.5);
my @lines = state_lines('kept.quota');
is($lines[0], 'gpt_auth_quota 3', 'state file written while running: header');
is(join("\n", sort @lines[1 .. $#lines]),
	v3('alice@example.com', $p->{day}, 4, $p->{month}, 4) . "\n" . v3('bob@example.com', $p->{day}, 2, $p->{month}, 2),
	'one line per user: address (lower case), day, month, then the amounts of day and month');
opendir(my $dh, $dir);
my @files = readdir $dh;
closedir $dh;
is(join(' ', sort grep { /\.quota$/ } @files), 'kept.quota',
	'only the zone with state= and interval=1s has written (none without state=, interval=1h: not yet)');
is(join(' ', grep { /\.tmp$/ } @files), '', 'no temporary files left behind');

# the old version stays intact for a reader that has it open: the file is replaced (rename)

open(my $old, '<', "$dir/kept.quota") or die "kept.quota: $!";
my $ino = (stat($old))[1];
req('/kept/x', $bob);
sleep(1.5);
@lines = state_lines('kept.quota');
ok(grep({ $_ eq v3('bob@example.com', $p->{day}, 3, $p->{month}, 3) } @lines),
	'written again after the next interval');
isnt((stat("$dir/kept.quota"))[1], $ino, 'a new file (inode) took its place');
my @old_lines = <$old>;
close $old;
ok(grep({ $_ eq v3('bob@example.com', $p->{day}, 2, $p->{month}, 2) . "\n" } @old_lines),
	'the old file was not rewritten in place');

# reload: the zones are reused, counters carry on (also without state=)

reload_and_wait($t);
is(used('/kept/x', $alice), '200 5/5', 'after reload: alice goes on from 4');
is(used('/plain/x', $alice), '200 3/3', 'after reload: a zone without state= goes on too');
is(used('/atexit/x', $alice), '200 5/5', 'after reload: atexit zone goes on');

# reload with smaller budgets: the counts stay, the new limits apply

write_conf(5);
reload_and_wait($t);
is(used('/kept/x', $alice), '429 5/5', 'reload with day=5: alice (5 used) is refused');
is(used('/plain/x', $alice), '200 4/4', 'reload with day=5: plain zone, 4 of 5');
is(used('/plain/x', $alice), '200 5/5', 'plain zone: 5 of 5');
is(used('/plain/x', $alice), '429 5/5', 'and then refused');
is(used('/kept/x', $bob), '200 4/4', 'bob: 4 of 5');

write_conf(10);
reload_and_wait($t);
is(used('/kept/x', $alice), '200 6/6', 'reload back to day=10: alice goes on');

# reload with a larger zone: a new zone, filled from the state file

sleep(1.5);
write_conf(10, '2m');
reload_and_wait($t);
is(used('/kept/x', $alice), '200 7/7', 'reload with a new zone size: counts taken over from the old zone');
is(used('/plain/x', $alice), '200 6/6', 'the unchanged zone is still reused (day=10 again)');
sleep(1.5);
@lines = state_lines('kept.quota');
ok(grep({ $_ eq v3('alice@example.com', $p->{day}, 7, $p->{month}, 7) } @lines),
	'after reload the new worker 0 goes on writing');

# a full restart: the state file carries the counters over

req('/atexit/x', $alice);	# 6, only in memory: interval=1h
req('/kept/x', $bob);		# 5, in memory for less than the interval
$t->stop();

@lines = state_lines('kept.quota');
is(join("\n", sort @lines[1 .. $#lines]),
	v3('alice@example.com', $p->{day}, 7, $p->{month}, 7) . "\n" . v3('bob@example.com', $p->{day}, 5, $p->{month}, 5),
	'written at exit: the latest counts');
@lines = state_lines('atexit.quota');
is(join("\n", @lines), "gpt_auth_quota 3\n" . v3('alice@example.com', $p->{day}, 6, $p->{month}, 6),
	'interval=1h: written at exit (relative path, under the prefix)');

unlike(log_since($t, $log), qr/\[(error|warn)\].*(state|quota)/,
	'no complaints about a missing state file or anything else');

# entries from yesterday and from a past month; the restart must keep what it can

# (carol: last counted the day before, in this month: written with this month's number, so
# that the test does not depend on the calendar; day and month are kept independently)
my $yesterday = $p->{day} - 1;
$t->write_file('kept.quota', join('', map { "$_\n" } state_lines('kept.quota'),
	v3('carol@example.com', $yesterday, 7, $p->{month}, 9),
	v3('dave@example.com', 1, 5, 1, 5),
	v3('erin@example.com', 1, 5, 1, 5)));
# the other zone's file in the format of version 1 (still read)
$t->write_file('atexit.quota', "gpt_auth_quota 1\nalice\@example.com $p->{day} 6 $p->{month} 6\n");

$log = log_offset($t);
$t->run();

my $j = quota_json(body(req('/usage?format=json', $alice))) // {};
is(join(' ', map { "$_->{email}:$_->{day}:$_->{month}" } @{ $j->{users} // [] }),
	'carol@example.com:0:9 alice@example.com:7:7 bob@example.com:5:5',
	'report after restart: loaded users; yesterday\'s day count is 0; past months left out');
is(used('/kept/x', $alice), '200 8/8', 'after restart: alice goes on from 7');
is(used('/kept/x', $bob), '200 6/6', 'after restart: bob goes on from 5');
is(used('/plain/x', $alice), '200 1/1', 'after restart: no state=, fresh count');
is(used('/atexit/x', $alice), '200 7/7', 'after restart: the at-exit write was loaded');
is(used('/kept/x', 'carol@example.com'), '200 1/10',
	'an entry of yesterday: the day starts again, the month goes on');
is(used('/kept/x', 'dave@example.com'), '200 1/1', 'an entry of a past month: starts again');
like(log_since($t, $log), qr/\[notice\] .*gpt_auth: gpt_auth_quota_zone "kept": 5 users and groups and 0 API keys loaded from "\Q$dir\E\/kept\.quota"/,
	'notice: users loaded');
like(log_since($t, $log), qr/\[notice\] .*gpt_auth_quota_zone "atexit": 1 users and groups and 0 API keys loaded from "\Q$dir\E\/atexit\.quota"/,
	'notice for the other zone (a state file of version 1)');

sleep(1.5);
@lines = state_lines('kept.quota');
is(scalar(grep { /^erin\@/ } @lines), 0, 'past-month entries are not written back');
ok(grep({ $_ eq v3('dave@example.com', $p->{day}, 1, $p->{month}, 1) } @lines),
	'a past-month user who came back is written with the new month');
ok(grep({ /^carol\@example\.com $p->{day} $p->{month} 1 0 0 0 10 / } @lines), 'carol: today\'s count');

# a broken state file: logged, counting starts from zero, the file is replaced

$t->stop();
$t->write_file('kept.quota', "alice\@example.com 1 2 3 4\n");
$t->write_file('atexit.quota', "gpt_auth_quota 1\nalice\@example.com 1 2\n");
$log = log_offset($t);
$t->run();

is(used('/kept/x', $alice), '200 1/1', 'broken state file: starts from zero');
is(used('/atexit/x', $alice), '200 1/1', 'malformed line: starts from zero');
my $l = log_since($t, $log);
like($l, qr/\[error\] .*gpt_auth: gpt_auth_quota_zone "kept": state "\Q$dir\E\/kept\.quota": line 1: expected "gpt_auth_quota 3"; starting from zero/,
	'error: no header');
like($l, qr/\[error\] .*gpt_auth_quota_zone "atexit": state "\Q$dir\E\/atexit\.quota": line 2: malformed entry; starting from zero/,
	'error: malformed entry');
sleep(1.5);
@lines = state_lines('kept.quota');
is(join("\n", @lines), "gpt_auth_quota 3\n" . v3('alice@example.com', $p->{day}, 1, $p->{month}, 1),
	'the broken file is replaced by the next write');

# a state file that cannot be written: an error, counting goes on

$t->stop();
unlink("$dir/kept.quota");
mkdir("$dir/kept.quota");
$log = log_offset($t);
$t->run();
is(used('/kept/x', $alice), '200 1/1', 'state file is a directory: counting works');
sleep(1.5);
$t->stop();
$l = log_since($t, $log);
like($l, qr/\[error\] .*gpt_auth_quota_zone "kept": state "\Q$dir\E\/kept\.quota" \(21: Is a directory\)/,
	'unreadable at start: error');
like($l, qr/\[error\] .*gpt_auth_quota_zone "kept": cannot write state "\Q$dir\E\/kept\.quota" \(21: Is a directory\)/,
	'cannot write: error');

###############################################################################
