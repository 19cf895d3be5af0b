package GptAuthDns;

# A tiny DNS server for the tests that use nginx's resolver (gpt_auth_quota_redis ... resolve):
# a child process on a loopback UDP port answering A queries from a file of "name address"
# lines, read at every query (so a test changes the answers by rewriting it); a name not in
# the file is NXDOMAIN, any other query type of a known name an empty answer. Answers carry a
# TTL of 1 second.

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT = qw/ dns_start dns_stop /;

use IO::Socket::INET;
use POSIX ();

# dns_start($file): (the child's pid, the UDP port it answers on: one the kernel chose, as the
# test harnesses hold the ports they hand out until nginx starts).
sub dns_start {
	my ($file) = @_;
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'udp')
		or die "dns_start: cannot bind a UDP port on 127.0.0.1: $!\n";
	my $port = $s->sockport();
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		while (1) {
			my $peer = $s->recv(my $q, 512);
			next unless defined $peer;
			my $a = answer($q, $file);
			$s->send($a, 0, $peer) if defined $a;
		}
	}
	close $s;
	return ($pid, $port);
}

sub dns_stop {
	my ($pid) = @_;
	kill 'KILL', $pid;
	local $?;
	waitpid($pid, 0);
}

sub answer {
	my ($q, $file) = @_;
	return undef if length $q < 17;
	my ($id) = unpack 'n', $q;
	my $pos = 12;
	my @labels;
	while ($pos < length $q) {
		my $len = ord substr($q, $pos++, 1);
		last if $len == 0;
		push @labels, substr($q, $pos, $len);
		$pos += $len;
	}
	return undef if $pos + 4 > length $q;
	my ($type) = unpack 'n', substr($q, $pos, 2);
	my $question = substr($q, 12, $pos + 4 - 12);
	my $name = lc join '.', @labels;
	my %map;
	if (open my $fh, '<', $file) {
		while (<$fh>) {
			my ($n, $addr) = split;
			$map{lc $n} = $addr if defined $addr;
		}
	}
	my ($rcode, @answers) = (0);
	if (!exists $map{$name}) {
		$rcode = 3;
	} elsif ($type == 1) {
		push @answers, pack('n n n N n C4', 0xc00c, 1, 1, 1, 4, split /\./, $map{$name});
	}
	return pack('n n n n n n', $id, 0x8180 | $rcode, 1, scalar @answers, 0, 0)
		. $question . join('', @answers);
}

1;
