package GptAuthAI;

# Helpers for the AI API tests (t/gpt_auth_ai*.t): the mock provider t/ai/mock_provider.py as a
# daemon of the test, the official SDKs through t/ai/client.py (build/pyenv, made by
# tools/install-python.sh), and the mock's own log of what reached it.

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT = qw/ start_mock sdk mock_log mock_reset log_lines price_nanos usd /;

use IO::Socket::INET;
use JSON::PP;
use POSIX qw/ WNOHANG /;
use Time::HiRes qw/ time sleep /;
use FindBin;

my $top = "$FindBin::Bin/..";

sub python {
	my $py = "$top/build/pyenv/bin/python";
	-x $py or die "no $py: run tools/install-python.sh (make test does)\n";
	return $py;
}

# start_mock($t, $port, [extra args]): the mock on 127.0.0.1:$port (a real port), its log in
# the test directory (mock.log); waits until it accepts connections.
sub start_mock {
	my ($t, $port, @extra) = @_;
	my $d = $t->testdir();
	$t->run_daemon('python3', "$top/t/ai/mock_provider.py", '--port', $port,
		'--port-file', "$d/mock.port", '--log', "$d/mock.log", @extra);
	my $pid = $t->{_daemons} ? $t->{_daemons}[-1] : undef;
	my $deadline = time() + 20;
	until (-s "$d/mock.port") {
		my $gone = defined $pid && waitpid($pid, WNOHANG) == $pid;
		die "mock provider did not start\n" if $gone || time() > $deadline;
		sleep(0.05);
	}
	return $port;
}

# sdk(base_url => URL, sdk => 'openai', call => 'chat', ...): runs t/ai/client.py with the
# other pairs as --name value (a true value without a value for flags: stream => 1); `mock`
# and `header` take array refs. Returns the decoded JSON line (undef if none).
sub sdk {
	my (%a) = @_;
	my @args = ('--sdk', delete $a{sdk} // 'openai', '--call', delete $a{call} // 'chat');
	for my $k (sort keys %a) {
		my $v = $a{$k};
		(my $opt = "--$k") =~ tr/_/-/;
		if (ref $v eq 'ARRAY') {
			push @args, map { ($opt, $_) } @$v;
		} elsif ($k =~ /^(stream|include_usage|helper|events)$/) {
			push @args, $opt if $v;
		} else {
			push @args, $opt, $v;
		}
	}
	my $pid = open(my $fh, '-|') // die "fork: $!";
	if ($pid == 0) {
		open(STDERR, '>', '/dev/null');
		exec(python(), "$top/t/ai/client.py", @args) or exit 127;
	}
	local $/;
	my $out = <$fh> // '';
	close $fh;
	my ($line) = $out =~ /^(\{.*\})\s*$/m;
	return undef unless defined $line;
	return eval { JSON::PP->new->utf8->decode($line) };
}

sub _get {
	my ($port, $method, $path) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5) or return '';
	print $s "$method $path HTTP/1.0\r\nHost: mock\r\nContent-Length: 0\r\n\r\n";
	local $/;
	my $r = <$s> // '';
	$r =~ s/^.*?\r\n\r\n//s;
	return $r;
}

# The mock's log of answers (array ref, oldest first).
sub mock_log {
	my ($port) = @_;
	return eval { JSON::PP->new->utf8->decode(_get($port, 'GET', '/_mock/log')) } // [];
}

sub mock_reset {
	my ($port) = @_;
	_get($port, 'POST', '/_mock/reset');
}

# The lines of a test-directory file (an access log) from line $from (0-based).
sub log_lines {
	my ($t, $file, $from) = @_;
	my $path = $t->testdir() . "/$file";
	open(my $fh, '<', $path) or return ();
	my @l = <$fh>;
	chomp @l;
	return @l[($from // 0) .. $#l];
}

# Nano-dollars for tokens at prices in US dollars per million (the module's rule: pico-dollars
# summed, rounded up to nano-dollars), e.g. price_nanos([2, '2.50'], [50, '10']).
sub price_nanos {
	my $pico = 0;
	for my $p (@_) {
		my ($tokens, $usd) = @$p;
		my ($w, $f) = split /\./, "$usd.";
		$f = substr(($f // '') . '000000', 0, 6);
		$pico += $tokens * ($w * 1_000_000 + $f);
	}
	return int(($pico + 999) / 1000);
}

# Nano-dollars as the module prints them: 6 decimals, rounded half up.
sub usd {
	my ($nanos) = @_;
	my $micros = int(($nanos + 500) / 1000);
	return sprintf('%d.%06d', int($micros / 1_000_000), $micros % 1_000_000);
}

1;
