package GptAuthRedis;

# A real Redis for the cluster tests (t/gpt_auth_quota_redis*.t): Debian's redis-server as a
# child process on a loopback port, with a password, no persistence of its own unless asked
# (`SAVE` writes dump.rdb in the test directory; `keep => 1` starts from it), stopped by the
# tests (SIGKILL: a crash, or SIGSTOP: a Redis that accepts connections and never answers).

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT = qw/ redis_new redis_tls_files /;

use POSIX ();
use Time::HiRes qw/ sleep /;

my $server = '/usr/bin/redis-server';
my $cli = '/usr/bin/redis-cli';

# redis_new(dir => ..., port => ..., password => ..., [tls_port => ...]): an object (also
# listening on the unix socket DIR/redis-PORT.sock, and with tls_port on TLS there with the
# certificates of redis_tls_files(DIR), client certificates required) with start(%a), stop(),
# pause(), resume(), cmd(@args) (redis-cli's answer, chomped), total($key, $unit).
sub redis_new {
	my (%a) = @_;
	die "redis-server not installed (tools/install-deps.sh test installs it)\n"
		unless -x $server && -x $cli;
	return bless { %a }, __PACKAGE__;
}

sub start {
	my ($self, %a) = @_;
	my ($dir, $port) = @$self{qw/ dir port /};
	unlink "$dir/dump.rdb" unless $a{keep};
	my @args = ('--port', $port, '--bind', '127.0.0.1', '--dir', $dir,
		'--dbfilename', 'dump.rdb', '--save', '', '--appendonly', 'no',
		'--requirepass', $self->{password}, '--logfile', "$dir/redis-$port.log",
		'--unixsocket', "$dir/redis-$port.sock", '--unixsocketperm', '700');
	push @args, '--tls-port', $self->{tls_port}, '--tls-cert-file', "$dir/redis-server.crt",
		'--tls-key-file', "$dir/redis-server.key", '--tls-ca-cert-file', "$dir/redis-ca.crt",
		'--tls-auth-clients', 'yes'
		if $self->{tls_port};
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		open STDOUT, '>', '/dev/null';
		exec $server, @args or POSIX::_exit(1);
	}
	$self->{pid} = $pid;
	for (1 .. 100) {
		return $self if $self->cmd('PING') eq 'PONG';
		sleep 0.05;
	}
	die "redis-server did not start on port $port\n";
}

sub stop {
	my ($self) = @_;
	my $pid = delete $self->{pid} or return;
	kill 'CONT', $pid;
	kill 'KILL', $pid;
	local $?;
	waitpid($pid, 0);
}

sub pause { kill 'STOP', $_[0]->{pid} if $_[0]->{pid} }
sub resume { kill 'CONT', $_[0]->{pid} if $_[0]->{pid} }

sub cmd {
	my ($self, @args) = @_;
	my $quoted = join ' ', map { "'$_'" } @args;
	my $out = `$cli -p $self->{port} -a '$self->{password}' --no-auth-warning $quoted 2>&1`;
	chomp $out;
	return $out;
}

# The cluster's total of one unit in a day or month hash: the sum of the nodes' fields
# (`requests:NODE`, ...); '' when the hash does not exist.
sub total {
	my ($self, $key, $unit) = @_;
	my @f = split /\n/, $self->cmd('HGETALL', $key);
	return '' unless @f;
	my $sum = 0;
	while (my ($k, $v) = splice(@f, 0, 2)) {
		$sum += $v if $k =~ /^\Q$unit\E:/;
	}
	return $sum;
}

# Certificates in DIR for a Redis on TLS (openssl, P-256 keys): redis-ca.crt (the CA),
# redis-server.crt/.key (names redis.test and 127.0.0.1), redis-client.crt/.key (a client of
# that CA), redis-other-ca.crt (a CA that signed neither).
sub redis_tls_files {
	my ($dir) = @_;
	my $key = '-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';
	my $run = sub { system("openssl @_ >/dev/null 2>&1") == 0 or die "openssl @_: failed\n" };
	open my $fh, '>', "$dir/redis-san.ext" or die "$dir/redis-san.ext: $!\n";
	print $fh "subjectAltName=DNS:redis.test,IP:127.0.0.1\n";
	close $fh;
	for my $ca (qw/ ca other-ca /) {
		$run->("req -x509 $key -keyout $dir/redis-$ca.key -out $dir/redis-$ca.crt -days 2"
			. " -subj /CN=gpt-auth-test-$ca");
	}
	for my $who (qw/ server client /) {
		$run->("req $key -keyout $dir/redis-$who.key -out $dir/redis-$who.csr"
			. " -subj /CN=redis-$who");
		$run->("x509 -req -in $dir/redis-$who.csr -CA $dir/redis-ca.crt"
			. " -CAkey $dir/redis-ca.key -CAcreateserial -out $dir/redis-$who.crt -days 2"
			. ($who eq 'server' ? " -extfile $dir/redis-san.ext" : ''));
	}
}

sub DESTROY { $_[0]->stop() }

1;
