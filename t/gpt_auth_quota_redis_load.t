#!/usr/bin/perl

# gpt_auth: two nginx nodes sharing a zone through a real Redis, under load. Parallel clients
# as one user, spread over both nodes, use up one day budget: the requests admitted exceed it
# by no more than the documented bound (the user's request rate times one interval plus one
# round), where without the sharing each node would admit the whole budget. Then a load on both
# nodes while Redis is killed, started again empty, frozen (SIGSTOP: it takes connections and
# never answers, so each round times out), thawed, snapshotted, killed and started again from
# its snapshot: no request fails, the slowest request stays far below the round timeout (no
# worker waits for Redis), and afterwards Redis and both nodes agree on the total, which is the
# number of requests served.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use GptAuthQuota;
use GptAuthRedis;
use POSIX ();
use Time::HiRes qw/ time sleep /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $ta = Test::Nginx->new()->has(qw/http proxy/);
my $tb = Test::Nginx->new()->has(qw/http proxy/);
my $dir = $ta->testdir();
my $password = 'pw-' . join('', map { ('a' .. 'z')[rand 26] } 1 .. 12);
my $redis = redis_new(dir => $dir, port => port(8090), password => $password);

my $BUDGET = 600;
my $INTERVAL = 0.2;	# interval=200ms
my $TIMEOUT = 1;	# timeout=1s: a worker that waited for Redis would stall this long

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    access_log off;

    gpt_auth_key_file %%KEYS%%;

    gpt_auth_quota_zone zone=chat:1m;
    gpt_auth_quota_redis zone=chat server=127.0.0.1:%%PORT_8090%%
                         node=%%NODE%% password_file=%%PWFILE%% interval=200ms timeout=1s;

    server {
        listen       127.0.0.1:%%PORT%% reuseport;
        server_name  localhost;

        location /budget/ {
            gpt_auth on;
            gpt_auth_quota zone=chat day=%%BUDGET%%;
            proxy_pass http://127.0.0.1:%%BACKEND%%;
        }

        location /load/ {
            gpt_auth on;
            gpt_auth_quota zone=chat day=100000000;
            proxy_pass http://127.0.0.1:%%BACKEND%%;
        }

        location = /usage {
            gpt_auth on;
            gpt_auth_quota_report zone=chat;
        }
    }

    server {
        listen       127.0.0.1:%%BACKEND%%;
        server_name  backend;

        location / {
            return 200 "backend\n";
        }
    }
}

EOF

for my $n ([ $ta, 8081, 8083, 'a' ], [ $tb, 8082, 8084, 'b' ]) {
	my ($t, $port, $backend, $name) = @$n;
	my $c = $conf;
	$c =~ s/%%PORT%%/$port/g;
	$c =~ s/%%NODE%%/$name/g;
	$c =~ s/%%BACKEND%%/$backend/g;
	$c =~ s/%%KEYS%%/$dir\/keys/g;
	$c =~ s/%%PWFILE%%/$dir\/redis.pw/g;
	$c =~ s/%%BUDGET%%/$BUDGET/g;
	$t->write_file_expand('nginx.conf', $c);
}

my $key = new_key_bytes();
$ta->write_file('keys', key_line($key) . "\n");
chmod 0600, "$dir/keys";
$ta->write_file('redis.pw', "$password\n");

$redis->start();
$ta->run();
$tb->run();
# Node B's final checks: the upstream nginx-tests library adds "no alerts" and "no sanitizer
# errors" for every instance alive once there is a plan, the project's harness checks the logs
# of all instances in one pair (counted by plan()).
my $second_checks = Test::Nginx->can('_teardown') ? 0 : 2;
$ta->plan(9 + $second_checks);

###############################################################################

my $p = periods(time());
my %node = (A => 8081, B => 8082);

# clients($n, $seconds, $uri, $email, %a): $n processes sending requests as $email, each
# alternating between the nodes, pausing $a{pause} seconds between requests, for $seconds or
# (with stop_after => K) until K answers in a row were 429. Returns [status, seconds] of every
# request, in no particular order. $a{during}: called in the parent meanwhile.
my sub clients {
	my ($n, $seconds, $uri, $email, %a) = @_;
	my $cookie = cookie_for($key, $email);
	my @kids;
	for my $i (1 .. $n) {
		my $file = "$dir/client-$i.txt";
		my $pid = fork() // die "fork: $!";
		if ($pid == 0) {
			open(my $out, '>', $file) or POSIX::_exit(1);
			my ($end, $refused, $k) = (time() + $seconds, 0, $i);
			while (time() < $end) {
				my $t0 = time();
				my $r = request($uri, cookie => $cookie, port => $node{ $k++ % 2 ? 'A' : 'B' },
					timeout => 5);
				my $st = status($r);
				printf $out "%d %.4f\n", $st, time() - $t0;
				$refused = $st == 429 ? $refused + 1 : 0;
				last if $a{stop_after} && $refused >= $a{stop_after};
				sleep $a{pause} if $a{pause};
			}
			close $out;
			POSIX::_exit(0);
		}
		push @kids, [ $pid, $file ];
	}
	$a{during}->() if $a{during};
	my @all;
	for my $kid (@kids) {
		waitpid($kid->[0], 0);
		open(my $in, '<', $kid->[1]) or next;
		push @all, map { [ split ' ' ] } <$in>;
		close $in;
	}
	return \@all;
}

my sub day_total {
	my ($email) = @_;
	return $redis->total("gpt_auth:chat:d:$p->{day}:$email", 'requests');
}

my sub report_day {
	my ($node, $email) = @_;
	my $r = request('/usage?format=json', cookie => cookie_for($key, $email), port => $node{$node});
	my ($u) = grep { $_->{email} eq $email } @{ (quota_json(body($r)) // {})->{users} // [] };
	return $u ? $u->{day} : 'none';
}

# one budget for parallel clients on both nodes

my $t0 = time();
my $runs = clients(8, 20, '/budget/', 'carol@example.com', pause => 0.005, stop_after => 5);
my @ok = grep { $_->[0] == 200 } @$runs;
my @other = grep { $_->[0] != 200 && $_->[0] != 429 } @$runs;
# the rate at which the cluster admitted carol's requests, until the budget was gone
my $admitted = @ok;
my $window = $INTERVAL + 0.1;	# an interval, and a round (on loopback well under 100 ms)
my $elapsed = time() - $t0;
my $rate = @$runs / $elapsed;
my $bound = int($rate * $window + 0.5);
sleep 1;
ok($admitted >= $BUDGET, "8 clients, both nodes: $admitted admitted (budget $BUDGET)");
ok($admitted - $BUDGET <= $bound,
	sprintf('overshoot %d <= the bound %d (%.0f requests/s x (%.1f s interval + 0.1 s round))',
		$admitted - $BUDGET, $bound, $rate, $INTERVAL));
ok($bound < $BUDGET, "the bound ($bound) is smaller than what unshared nodes would overshoot ($BUDGET)");
is(day_total('carol@example.com'), $admitted, 'Redis counted each admitted request once');
is(scalar @other, 0, 'no answer but 200 and 429');

# faults under load

my @faults;
my $mark = log_offset($ta);
$runs = clients(4, 8, '/load/', 'dave@example.com', pause => 0.01, during => sub {
	my $start = time();
	my $at = sub { my $d = $start + $_[0] - time(); sleep $d if $d > 0 };
	$at->(1);   $redis->stop();		push @faults, 'killed';
	$at->(2.5); $redis->start();		push @faults, 'started empty';
	$at->(3.5); $redis->pause();		push @faults, 'frozen';
	$at->(5);   $redis->resume();		push @faults, 'thawed';
	$at->(6);   $redis->cmd('SAVE');	push @faults, 'saved';
	$at->(6.3); $redis->stop();
	$redis->start(keep => 1);		push @faults, 'restarted from the snapshot';
});
my @served = grep { $_->[0] == 200 } @$runs;
my @lat = sort { $a <=> $b } map { $_->[1] } @$runs;
my ($max, $p99) = ($lat[-1], $lat[int(0.99 * $#lat)]);
is(scalar @served, scalar @$runs, sprintf('under faults (%s): %d requests, all served',
	join(', ', @faults), scalar @$runs));
ok($max < $TIMEOUT / 2, sprintf('slowest request %.0f ms (p99 %.0f ms), far below the %d ms round timeout',
	$max * 1000, $p99 * 1000, $TIMEOUT * 1000));

sleep 3;	# the back-off after the failures: at most 1.6 s
my $n = @served;
is(day_total('dave@example.com'), $n, "Redis: dave's total is the $n requests served");
is(report_day('A', 'dave@example.com') . ' ' . report_day('B', 'dave@example.com'), "$n $n",
	'and both nodes report it');

###############################################################################
