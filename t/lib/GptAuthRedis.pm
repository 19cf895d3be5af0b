package GptAuthRedis;

# A real Redis for the cluster tests (t/gpt_auth_quota_redis*.t): Debian's redis-server as a
# child process on a loopback port, with a password, no persistence of its own unless asked
# (`SAVE` writes dump.rdb in the test directory; `keep => 1` starts from it), stopped by the
# tests (SIGKILL: a crash, or SIGSTOP: a Redis that accepts connections and never answers).

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT = qw/ redis_new /;

use POSIX ();
use Time::HiRes qw/ sleep /;

my $server = '/usr/bin/redis-server';
my $cli = '/usr/bin/redis-cli';

# redis_new(dir => ..., port => ..., password => ...): an object (also listening on the unix
# socket DIR/redis-PORT.sock) with start(%a), stop(),
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

sub DESTROY { $_[0]->stop() }

1;
