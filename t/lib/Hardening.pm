package Hardening;

# Helpers for the hardening tests of the gpt_auth Test::Nginx suite (attacks, faults, reloads):
#
# - a backend server block in the test's own nginx logs every request it gets to its own
#   access_log; backend_reached() tells whether a request (found by a marker in its URI) ever
#   got there, so that an attack test can prove the upstream was never reached;
# - crash_lines() finds worker crashes in an error log;
# - load_start() / load_stop(): a load generator of forked Perl clients that send requests in a
#   loop (a new connection each) until stopped, and report every answer that was not the
#   expected status.
#
#     my $load = load_start($t, clients => 4, requests => [ { uri => '/', cookie => $c } ]);
#     ... reload, rename files ...
#     my $res = load_stop($load);   # { total, ok, bad => [ "time status uri: why", ... ] }

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT = qw/ backend_log backend_reached crash_lines load_start load_stop /;

use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

use Test::Nginx qw/ port /;

# The backend's access log (default file name: backend.log in the test directory), or ''.
sub backend_log {
	my ($t, $file) = @_;
	$file //= 'backend.log';
	open(my $fh, '<:raw', $t->testdir() . "/$file") or return '';
	local $/;
	my $log = <$fh> // '';
	close $fh;
	return $log;
}

# How many backend log lines contain $marker (the log format must include $request_uri).
sub backend_reached {
	my ($t, $marker, $file) = @_;
	return scalar(grep { index($_, $marker) >= 0 } split /\n/, backend_log($t, $file));
}

# Lines of an error log that say a worker died.
sub crash_lines {
	my ($log) = @_;
	return grep { /exited on signal|exited with code [1-9]|worker process \d+ exited with fatal/ }
		split /\n/, $log;
}

###############################################################################
# Load generator.

# One request, new connection, HTTP/1.0. Returns (status, error text).
sub _one {
	my ($port, $req, $timeout) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Proto => 'tcp',
		Timeout => $timeout) or return (0, "connect: $!");
	binmode $s;
	my $host = $req->{host} // 'localhost';
	my $text = "GET $req->{uri} HTTP/1.0\r\nHost: $host\r\n";
	$text .= "Cookie: $req->{cookie}\r\n" if defined $req->{cookie};
	$text .= "$_\r\n" for @{ $req->{headers} // [] };
	$text .= "\r\n";
	my $off = 0;
	while ($off < length $text) {
		my $n = syswrite($s, $text, length($text) - $off, $off);
		return (0, "write: $!") unless $n;
		$off += $n;
	}
	my $sel = IO::Select->new($s);
	my $r = '';
	while (1) {
		return (0, "read timeout after ${timeout}s") unless $sel->can_read($timeout);
		my $n = sysread($s, $r, 65536, length $r);
		return (0, "read: $!") unless defined $n;
		last if $n == 0;
	}
	close $s;
	return (0, 'empty answer') if $r eq '';
	my ($status) = $r =~ m{^HTTP/\d\.\d (\d{3})} or return (0, 'no status line');
	my $why = '';
	if (defined $req->{expect_body} && $r !~ $req->{expect_body}) {
		$why = 'unexpected body';
		$status = "$status/body";
	}
	return ($status, $why);
}

# load_start($t, clients => 4, port => 8080 (nominal), timeout => 5, pause => seconds between
#            requests of a client (default 0.002), max_seconds => 60,
#            requests => [ { uri, cookie, host, headers => [...], status => 200,
#                            expect_body => qr// }, ... ])
# Each client cycles through the requests (starting at a different one) until load_stop().
sub load_start {
	my ($t, %a) = @_;
	my $clients = $a{clients} // 4;
	my $port = port($a{port} // 8080);
	my $timeout = $a{timeout} // 5;
	my $pause = $a{pause} // 0.002;
	my @reqs = @{ $a{requests} };
	my $dir = $t->testdir();
	my $stop = "$dir/load.stop." . Time::HiRes::time();
	# a client never outlives its test: it also stops when the test process is gone, or after
	# max_seconds (default 60)
	my $deadline = Time::HiRes::time() + ($a{max_seconds} // 60);
	my $parent = $$;
	my @pids;
	for my $i (0 .. $clients - 1) {
		my $pid = fork();
		die "fork: $!" unless defined $pid;
		if ($pid == 0) {
			my ($total, $ok, @bad) = (0, 0);
			my $j = $i;
			until (-e $stop || getppid() != $parent || Time::HiRes::time() > $deadline) {
				my $req = $reqs[$j++ % @reqs];
				my ($status, $why) = _one($port, $req, $timeout);
				$total++;
				if ($status eq ($req->{status} // 200)) {
					$ok++;
				} else {
					push @bad, sprintf('%.3f %s %s%s', Time::HiRes::time(), $status,
						$req->{uri}, $why ne '' ? ": $why" : '')
						if @bad < 50;
				}
				Time::HiRes::sleep($pause) if $pause > 0;
			}
			if (open(my $fh, '>', "$dir/load.$i.$$")) {
				print $fh "$total $ok\n", map { "$_\n" } @bad;
				close $fh;
			}
			POSIX::_exit(0);
		}
		push @pids, $pid;
	}
	return { pids => \@pids, stop => $stop, dir => $dir, started => Time::HiRes::time() };
}

# Stops the clients; returns { total, ok, bad => [ ... ], seconds }.
sub load_stop {
	my ($h) = @_;
	open(my $fh, '>', $h->{stop}) or die "$h->{stop}: $!";
	close $fh;
	my %res = (total => 0, ok => 0, bad => [],
		seconds => Time::HiRes::time() - $h->{started});
	for my $i (0 .. $#{ $h->{pids} }) {
		my $pid = $h->{pids}[$i];
		waitpid($pid, 0);
		my $file = "$h->{dir}/load.$i.$pid";
		open(my $in, '<', $file) or do {
			push @{ $res{bad} }, "client $i left no report";
			next;
		};
		my $head = <$in> // '0 0';
		my ($total, $ok) = split ' ', $head;
		$res{total} += $total;
		$res{ok} += $ok;
		chomp(my @bad = <$in>);
		push @{ $res{bad} }, @bad;
		close $in;
		unlink $file;
	}
	unlink $h->{stop};
	return \%res;
}

1;
