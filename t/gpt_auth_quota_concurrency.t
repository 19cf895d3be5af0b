#!/usr/bin/perl

# gpt_auth: budgets under concurrency. Two workers (listen ... reuseport spreads the
# connections over both), eight client processes sending requests as the same user as fast as
# they can (keep-alive, a new connection every few requests): exactly the budget's number of
# requests get 2xx, the others 429, and each count from 1 to the budget is handed out once (no
# lost or doubled updates). The budget (300 of 1600 requests) is large enough for the workers
# to race on it for a while: a check-and-count that is not atomic across workers fails here.
# Then two users at once, and an unlimited budget where the final count must equal the number
# of requests.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use GptAuthQuota;
use IO::Socket::INET;
use POSIX qw/ _exit /;
use Time::HiRes qw/ time sleep /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/);

my $BUDGET = 300;		# day= of /c/: enough requests within budget to race on

(my $conf = <<'EOF') =~ s/%%BUDGET%%/$BUDGET/;

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    access_log off;

    gpt_auth_key_file %%TESTDIR%%/keys;

    gpt_auth_quota_zone zone=conc:1m;

    server {
        listen       127.0.0.1:8080 reuseport;
        server_name  localhost;

        keepalive_requests 1000;

        add_header X-Day-Used "$gpt_auth_quota_day_used" always;
        add_header X-Pid "$pid" always;

        location /c/ {
            gpt_auth on;
            gpt_auth_quota zone=conc day=%%BUDGET%% month=unlimited;
        }

        location /u/ {
            gpt_auth on;
            gpt_auth_quota zone=conc day=unlimited month=unlimited;
        }

        location = /usage {
            gpt_auth on;
            gpt_auth_quota_report zone=conc;
        }
    }
}

EOF

$t->write_file_expand('nginx.conf', $conf);

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';
mkdir($t->testdir() . "/$_") for qw/ c u /;
$t->write_file("$_/x", "content\n") for qw/ c u /;

$t->run()->plan(19);

###############################################################################

my $CLIENTS = 8;
my $PER_CLIENT = 200;		# requests per client process
my $PER_CONNECTION = 10;	# keep-alive requests before a new connection

# One client process: $n requests, cycling through @users (pairs of [uri, cookie]); writes one
# line per response to $out: "<status> <user index> <X-Day-Used or -> <X-Pid or ->".
sub client {
	my ($out, $start, $n, @users) = @_;
	# a stuck client must not hang the suite (scaled for a slow nginx, e.g. under valgrind)
	my $f = $ENV{TEST_NGINX_TIMEOUT_FACTOR} // '';
	alarm(60 * ($f =~ /^\d+(?:\.\d+)?$/ ? $f : 1));
	open(my $fh, '>', $out) or _exit(2);
	my ($sock, $on_conn, $buf) = (undef, 0, '');
	wait_until($start, 0);
	for my $i (0 .. $n - 1) {
		my $u = $i % @users;
		my ($uri, $cookie) = @{ $users[$u] };
		if (!$sock || $on_conn >= $PER_CONNECTION) {
			$sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . port(8080))
				or do { print $fh "000 $u - -\n"; next };
			($on_conn, $buf) = (0, '');
		}
		$on_conn++;
		my $last = $on_conn >= $PER_CONNECTION;
		print $sock "GET $uri HTTP/1.1\r\nHost: localhost\r\nCookie: $cookie\r\n"
			. ($last ? "Connection: close\r\n" : '') . "\r\n";
		my $resp = read_response($sock, \$buf);
		if (!defined $resp) {
			print $fh "000 $u - -\n";
			undef $sock;
			next;
		}
		my $st = status($resp);
		print $fh join(' ', $st, $u, header($resp, 'X-Day-Used') // '-',
			header($resp, 'X-Pid') // '-') . "\n";
		undef $sock if $last || (header($resp, 'Connection') // '') =~ /close/i;
	}
	close $fh;
	_exit(0);
}

# Reads one response with a Content-Length body from a keep-alive connection.
sub read_response {
	my ($sock, $buf) = @_;
	while ($$buf !~ /\r\n\r\n/) {
		my $n = sysread($sock, $$buf, 65536, length $$buf);
		return undef unless $n;
	}
	my ($head) = $$buf =~ /\A(.*?\r\n\r\n)/s;
	my $len = $head =~ /^Content-Length:\s*(\d+)/mi ? $1 : 0;
	while (length($$buf) < length($head) + $len) {
		my $n = sysread($sock, $$buf, 65536, length $$buf);
		return undef unless $n;
	}
	my $resp = substr($$buf, 0, length($head) + $len, '');
	return $resp;
}

# Runs the clients in parallel; returns the response lines of all of them.
my sub run_clients {
	my ($tag, @users) = @_;
	my $start = time() + 0.5;
	my @pids;
	for my $c (1 .. $CLIENTS) {
		my $out = $t->testdir() . "/$tag.$c";
		my $pid = fork();
		die "fork: $!" unless defined $pid;
		if ($pid == 0) {
			# each client starts with a different user, so all users are contended
			my @mine = @users[map { ($_ + $c) % @users } 0 .. $#users];
			client($out, $start, $PER_CLIENT, @mine);
		}
		push @pids, [ $pid, $out, $c ];
	}
	my @lines;
	for my $p (@pids) {
		waitpid($p->[0], 0);
		my $text = eval { $t->read_file("$tag.$p->[2]") } // '';
		# map the client's user index back to the caller's
		for my $l (split /\n/, $text) {
			my ($st, $u, $used, $pid) = split / /, $l;
			push @lines, [ $st, ($u + $p->[2]) % @users, $used, $pid ];
		}
	}
	return @lines;
}

sub summary {
	my ($lines, $user) = @_;
	my %n;
	$n{ $_->[0] }++ for grep { $_->[1] == $user } @$lines;
	return join(' ', map { "$_:$n{$_}" } sort keys %n);
}

sub counts_handed_out {
	my ($lines, $user) = @_;
	return join(',', sort { $a <=> $b }
		map { $_->[2] } grep { $_->[1] == $user && $_->[0] == 200 } @$lines);
}

sub usage_of {
	my ($email) = @_;
	my $j = quota_json(body(request('/usage?format=json',
		cookie => cookie_for($key, 'admin@example.com')))) // {};
	my ($row) = grep { $_->{email} eq $email } @{ $j->{users} // [] };
	return $row ? "$row->{day}/$row->{month}" : 'none';
}

my $total = $CLIENTS * $PER_CLIENT;

# one user, eight clients

my $B = $BUDGET;
my @one = run_clients('one', [ '/c/x', cookie_for($key, 'alice@example.com') ]);
is(scalar @one, $total, "$total responses");
is(summary(\@one, 0), "200:$B 429:" . ($total - $B),
	"one user: exactly $B of them 200 (the budget), the rest 429");
is(counts_handed_out(\@one, 0), join(',', 1 .. $B), "counts 1..$B, each once");
my %pids = map { $_->[3] => 1 } grep { $_->[3] ne '-' } @one;
is(scalar keys %pids, 2, 'both workers answered');
%pids = map { $_->[3] => 1 } grep { $_->[0] == 200 } @one;
is(scalar keys %pids, 2, 'both workers handed out part of the budget');
is(usage_of('alice@example.com'), "$B/$B", "the zone holds exactly $B");

# two users at once, every client alternating between them

my @two = run_clients('two', [ '/c/x', cookie_for($key, 'bob@example.com') ],
	[ '/c/x', cookie_for($key, 'carol@example.com') ]);
is(scalar @two, $total, "$total responses");
is(summary(\@two, 0), "200:$B 429:" . ($total / 2 - $B), "bob: exactly $B of his requests 200");
is(summary(\@two, 1), "200:$B 429:" . ($total / 2 - $B), "carol: exactly $B of hers 200");
is(counts_handed_out(\@two, 0), join(',', 1 .. $B), "bob: counts 1..$B, each once");
is(counts_handed_out(\@two, 1), join(',', 1 .. $B), "carol: counts 1..$B, each once");
is(usage_of('bob@example.com'), "$B/$B", "the zone holds $B for bob");
is(usage_of('carol@example.com'), "$B/$B", "and $B for carol");

# an unlimited budget: every request counted, none lost

my @free = run_clients('free', [ '/u/x', cookie_for($key, 'dave@example.com') ],
	[ '/u/x', cookie_for($key, 'erin@example.com') ]);
is(summary(\@free, 0), '200:' . $total / 2, 'unlimited: all 200 (dave)');
is(summary(\@free, 1), '200:' . $total / 2, 'unlimited: all 200 (erin)');
is(counts_handed_out(\@free, 0), join(',', 1 .. $total / 2), 'dave: every count once');
is(counts_handed_out(\@free, 1), join(',', 1 .. $total / 2), 'erin: every count once');
is(usage_of('dave@example.com'), ($total / 2) . '/' . ($total / 2), 'no lost update (dave)');
is(usage_of('erin@example.com'), ($total / 2) . '/' . ($total / 2), 'no lost update (erin)');

###############################################################################
