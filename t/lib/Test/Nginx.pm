package Test::Nginx;

# Self-contained test harness for nginx test files written in the style of
# the nginx-tests suite.  This is an independent implementation of the part
# of the nginx-tests Test::Nginx interface that this project uses, so that
# the same t/*.t files run either with this library or with the upstream one
# (which wins when given first on @INC, e.g. "prove -I .../nginx-tests/lib").
#
# Only core Perl modules are used.  See the POD at the end of the file.

use strict;
use warnings;

use base qw/ Exporter /;

our @EXPORT = qw/ log_in log_out http http_get http_head port /;
our @EXPORT_OK = qw/
	http_start http_end http_content http_gzip_request http_gzip_like
/;
our %EXPORT_TAGS = (gzip => [ qw/ http_gzip_request http_gzip_like / ]);

our $VERSION = '0.01';

use Errno qw//;
use File::Temp qw//;
use IO::Socket::INET qw//;
use POSIX qw/ WNOHANG /;
use Scalar::Util qw/ weaken /;
use Time::HiRes qw/ sleep time /;

# Test::More must be loaded before the END block below is compiled: END
# blocks run in reverse order of compilation, so ours then runs before the
# END block of Test::Builder/Test2 that verifies the plan.
use Test::More qw//;

###############################################################################
# Tunables (package variables so a test can adjust them if really needed).

# TEST_NGINX_TIMEOUT_FACTOR scales them all, for a slow nginx (e.g. under valgrind).
my $F = ($ENV{TEST_NGINX_TIMEOUT_FACTOR} // '') =~ /^\d+(?:\.\d+)?$/
	? $ENV{TEST_NGINX_TIMEOUT_FACTOR} : 1;
our $START_TIMEOUT  = 5 * $F;	# run(): pid file + listening sockets
our $RELOAD_TIMEOUT = 5 * $F;	# reload(): new worker generation
our $QUIT_TIMEOUT   = 10 * $F;	# stop(): graceful shutdown (SIGQUIT)
our $TERM_TIMEOUT   = 5 * $F;	# stop(): fast shutdown (SIGTERM)
our $WAIT_TIMEOUT   = 5 * $F;	# waitforsocket() / waitforfile()
our $HTTP_TIMEOUT   = 8 * $F;	# http(): I/O timeout (upstream: 8 s, no option)

# Lines in error.log that make the "no sanitizer errors" check fail.
my $SANITIZER_RE = qr/==\d+==\s*ERROR:|[A-Za-z]*Sanitizer\b/;

###############################################################################
# Process-wide state.

my $LOAD_PID = $$;	# teardown only ever happens in this process

our %ports;		# nominal port => real port (see port())
my %PORT_TAKEN;		# real port => 1, to keep allocations distinct

my @INSTANCES;		# weak references to every object created
my $PLANNED = 0;	# ->plan() was called on some instance
my $CHECKS_DONE = 0;	# the two teardown checks ran already
my $ANY_TODO = 0;	# some instance called ->todo_alerts()
my @ALERT_FINDINGS;	# { line => ..., todo => 0|1 } collected at teardown
my @SANITIZER_FINDINGS;	# lines collected at teardown

my %V_CACHE;		# binary path => "nginx -V" output

###############################################################################
# Construction and teardown.

sub new {
	my ($class) = @_;
	$class = ref($class) || $class || __PACKAGE__;

	my $binary = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';

	my $dir = File::Temp::tempdir(
		'nginx-test-XXXXXXXXXX',
		TMPDIR => 1,
		CLEANUP => $ENV{TEST_NGINX_LEAVE} ? 0 : 1,
	);

	my $self = bless {
		_owner    => $$,
		_binary   => $binary,
		_testdir  => $dir,
		_started  => 0,
		_daemons  => [],
		_skip     => {},	# level => [ regexes ]
		_args     => [],
	}, $class;

	Test::More::BAIL_OUT("no nginx binary found at $binary")
		unless -x $binary;

	push @INSTANCES, $self;
	weaken($INSTANCES[-1]);

	Test::More::diag("test directory left at $dir")
		if $ENV{TEST_NGINX_LEAVE} && $ENV{TEST_NGINX_VERBOSE};

	return $self;
}

sub DESTROY {
	my ($self) = @_;

	# never tear down from a forked child (daemons, helper processes)
	return unless defined $self->{_owner} && $self->{_owner} == $$;

	local ($?, $@, $!);
	eval { $self->_teardown(); };
}

# Stops everything this instance started and records what its error log
# says for the final checks.  Runs at most once per instance.

sub _teardown {
	my ($self) = @_;

	return if $self->{_torn_down}++;

	$self->stop();
	$self->stop_daemons();

	my $log = $self->_slurp('error.log');
	my $stderr = $self->_slurp('nginx.stderr');

	foreach my $line (split /\n/, $log) {
		next unless $line =~ /\[(alert|emerg)\]/;
		my $level = $1;
		next if $self->_error_skipped($level, $line);
		push @ALERT_FINDINGS,
			{ line => $line, todo => $self->{_todo_alerts} ? 1 : 0 };
	}

	foreach my $line (split /\n/, $log . "\n" . $stderr) {
		push @SANITIZER_FINDINGS, $line if $line =~ $SANITIZER_RE;
	}

	if ($ENV{TEST_NGINX_CATLOG}) {
		Test::More::diag("--- $self->{_testdir}/error.log ---\n"
			. $log . "--- end of error.log ---");
	}
}

sub _error_skipped {
	my ($self, $level, $line) = @_;

	my $list = $self->{_skip}{$level} or return 0;
	return 1 unless @$list;		# whole level skipped
	foreach my $re (@$list) {
		return 1 if $line =~ $re;
	}
	return 0;
}

# The two extra checks announced by ->plan().  They cover the error logs of
# every instance of this process, each filtered by its own skip rules.

sub _final_checks {
	return if $CHECKS_DONE++;
	return unless $PLANNED;

	my $tb = Test::More->builder;

	my @alerts = map { $_->{line} } @ALERT_FINDINGS;
	my $hard = grep { !$_->{todo} } @ALERT_FINDINGS;
	my $todo = $ANY_TODO && !$hard;

	$tb->todo_start('alerts') if $todo;
	Test::More::is(join("\n", @alerts), '', 'no alerts');
	$tb->todo_end() if $todo;

	Test::More::is(join("\n", @SANITIZER_FINDINGS), '',
		'no sanitizer errors');
}

# The lexicals of the test file are gone by the time END blocks run: an
# instance still alive here is kept by something that lives until global
# destruction (a named sub that uses the file's $t, a package variable).  The
# upstream library runs its final checks when the object is destroyed, which
# then comes too late (after the plan was checked) or dies: fail here as well,
# so that the suite cannot pass with this library only.

END {
	# keep the exit status Test::Builder is going to compute/adjust
	local $?;

	if ($$ == $LOAD_PID) {
		my @alive = grep { defined && $_->{_owner} == $$ } @INSTANCES;
		foreach my $t (@alive) {
			eval { $t->_teardown(); 1 }
				or Test::More::diag("teardown failed: $@");
		}
		_final_checks();

		if (@alive && $PLANNED) {
			Test::More::diag("a Test::Nginx object is still alive at the end "
				. "of $0: a named sub that uses it (or an object holding "
				. "it) keeps it until global destruction, where the "
				. "upstream library's final checks fail; make the sub "
				. "lexical (my sub) or pass the object as an argument");
			Test::More::fail('Test::Nginx objects released by the end '
				. 'of the file');
		}
	}
}

###############################################################################
# Feature detection.

# http modules built unless --without-http_<name>_module is given
my %DEFAULT_HTTP = map { $_ => 1 } qw/
	access auth_basic autoindex browser charset empty_gif fastcgi geo
	grpc gzip limit_conn limit_req map memcached mirror proxy referer
	rewrite scgi split_clients ssi upstream_hash upstream_ip_hash
	upstream_keepalive upstream_least_conn upstream_random upstream_zone
	userid uwsgi
/;

# parts of the http core that cannot be switched off
my %ALWAYS_HTTP = map { $_ => 1 } qw/
	core headers index static try_files log chunked range not_modified
	write postpone copy_filter header_filter upstream
/;

# stream modules built unless --without-stream_<name>_module is given
my %DEFAULT_STREAM = map { $_ => 1 } qw/
	access geo limit_conn log map pass proxy return set split_clients
	upstream upstream_hash upstream_least_conn upstream_random
	upstream_zone core
/;

# mail protocols built unless --without-mail_<name>_module is given
my %DEFAULT_MAIL = map { $_ => 1 } qw/ pop3 imap smtp /;

# shared object names for dynamic modules whose name is irregular
my %DYNAMIC_NAME = (
	http_xslt_module => 'ngx_http_xslt_filter_module',
);

sub _configure_args {
	my ($self) = @_;

	my $bin = $self->{_binary};
	return $V_CACHE{$bin} if defined $V_CACHE{$bin};

	my $out = '';
	my $pid = open(my $fh, '-|');
	if (!defined $pid) {
		die "Can't fork for '$bin -V': $!\n";
	}
	if ($pid == 0) {
		open STDERR, '>&', \*STDOUT;
		exec { $bin } $bin, '-V' or POSIX::_exit(127);
	}
	{ local $/; $out = <$fh>; }
	close $fh;

	return $V_CACHE{$bin} = defined $out ? $out : '';
}

# true if the list of "load_module" directives given in TEST_NGINX_GLOBALS
# loads a shared object with one of the given base names
sub _loaded {
	my (@names) = @_;

	my $g = $ENV{TEST_NGINX_GLOBALS};
	return 0 unless defined $g;

	while ($g =~ /\bload_module\s+([^;]+?)\s*;/g) {
		my $file = $1;
		$file =~ s/^["']|["']$//g;
		$file =~ s!.*/!!;
		$file =~ s/\.so$//;
		$file =~ s/^lib//;
		foreach my $n (@names) {
			return 1 if $file =~ /^\Q$n\E(?:[-.\w]*)$/;
		}
	}

	return 0;
}

# "--with-<opt>" present (static), or "--with-<opt>=dynamic" present and the
# module loaded through TEST_NGINX_GLOBALS
sub _with {
	my ($self, $opt) = @_;

	my $args = $self->_configure_args();

	return 1 if $args =~ /(?:^|\s)--with-\Q$opt\E(?=\s|$)/m;

	if ($args =~ /(?:^|\s)--with-\Q$opt\E=dynamic(?=\s|$)/m) {
		my $so = $DYNAMIC_NAME{$opt} || "ngx_$opt";
		$so .= '_module' unless $so =~ /_module$/;
		return _loaded($so);
	}

	return 0;
}

sub _without {
	my ($self, $opt) = @_;
	return $self->_configure_args() =~ /(?:^|\s)--without-\Q$opt\E(?=\s|$)/m;
}

sub has_module {
	my ($self, $name) = @_;

	my $args = $self->_configure_args();

	my $http = !$self->_without('http');
	my $stream = $self->_with('stream');
	my $mail = $self->_with('mail');

	return $http if $name eq 'http';
	return $stream if $name eq 'stream';
	return $mail if $name eq 'mail';

	return $http && !$self->_without('http-cache') if $name eq 'cache';
	return !$self->_without('pcre') if $name eq 'pcre';
	return $args =~ /TLS SNI support enabled/ ? 1 : 0 if $name eq 'sni';
	return $self->_with('debug') if $name eq 'debug';
	return $self->_with('threads') if $name =~ /^(?:threads|thread_pool)$/;
	return $self->_with('file-aio') if $name =~ /^(?:aio|file_aio)$/;

	return $http && $self->_with('http_ssl_module')
		if $name eq 'ssl';

	# stream_<x>
	if ($name =~ /^stream_(\w+)$/) {
		my $m = $1;
		return 0 unless $stream;
		return !$self->_without("stream_${m}_module")
			if $DEFAULT_STREAM{$m};
		return $self->_with("stream_${m}_module") || _loaded($name);
	}

	# mail_<x> and the mail protocols
	if ($name =~ /^mail_\w+$/ || $DEFAULT_MAIL{$name}) {
		(my $m = $name) =~ s/^mail_//;
		return 0 unless $mail;
		return !$self->_without("mail_${m}_module")
			if $DEFAULT_MAIL{$m};
		return $self->_with("mail_${m}_module") || _loaded($name);
	}

	# http modules, accepting both "proxy" and "http_proxy"
	(my $m = $name) =~ s/^http_//;

	if ($ALWAYS_HTTP{$m}) {
		return $http;
	}

	if ($DEFAULT_HTTP{$m}) {
		return 0 unless $http;
		return 0 if $self->_without("http_${m}_module");
		return 0 if $m eq 'grpc' && !$self->_with('http_v2_module');
		return 1;
	}

	return 1 if $http && $self->_with("http_${m}_module");

	# anything else: a configure switch of that name, or a module
	# (e.g. this project's) loaded through TEST_NGINX_GLOBALS
	return 1 if $self->_with("${name}_module") || $self->_with($name);
	return 1 if _loaded("ngx_http_${m}_module", "ngx_stream_${m}_module",
		"ngx_${name}_module", $name);

	return 0;
}

sub has_feature {
	my ($self, $feature) = @_;

	return $^O ne 'MSWin32'
		if $feature =~ /^(?:unix|udp|symlink)$/;

	if ($feature =~ /^(openssl|libressl|boringssl):([0-9.]+)([a-z]*)$/i) {
		my ($lib, $need, $letter) = ($1, $2, $3);
		my $args = $self->_configure_args();
		return 0 unless $args =~ /built with \Q$lib\E ([0-9.]+)([a-z]*)/i;
		my ($have, $have_letter) = ($1, $2);
		my $c = _vcmp($have, $need);
		return $c > 0 if $c != 0;
		return ($have_letter || '') ge ($letter || '') ? 1 : 0;
	}

	if ($feature =~ /^socket_ssl/) {
		return eval { require IO::Socket::SSL; 1 } ? 1 : 0;
	}

	if ($feature eq 'cryptx') {
		return eval { require Crypt::Misc; 1 } ? 1 : 0;
	}

	return 0;
}

sub has {
	my ($self, @features) = @_;

	foreach my $feature (@features) {
		next if $self->has_module($feature);
		next if $self->has_feature($feature);

		Test::More::diag("SKIPPING $0: nginx lacks '$feature'");
		Test::More::plan(skip_all => "no $feature");
	}

	return $self;
}

# compares dotted version strings numerically: -1, 0 or 1
sub _vcmp {
	my ($a, $b) = @_;

	my @a = split /\./, $a;
	my @b = split /\./, $b;

	while (@a || @b) {
		my $x = shift(@a) || 0;
		my $y = shift(@b) || 0;
		return $x <=> $y if $x != $y;
	}

	return 0;
}

sub _nginx_version {
	my ($self) = @_;
	my ($v) = $self->_configure_args() =~ m!nginx version: \S*?/([0-9.]+)!;
	return $v;
}

sub has_version {
	my ($self, $need) = @_;

	my $v = $self->_nginx_version();
	return 0 unless defined $v;
	return _vcmp($v, $need) >= 0 ? 1 : 0;
}

sub has_daemon {
	my ($self, $daemon) = @_;

	my $found = $daemon =~ m!/! ? -x $daemon
		: grep { -x "$_/$daemon" } split /:/, ($ENV{PATH} || '');

	unless ($found) {
		Test::More::diag("SKIPPING $0: $daemon not found");
		Test::More::plan(skip_all => "$daemon not found");
	}

	return $self;
}

###############################################################################
# Plan and error-log expectations.

sub plan {
	my ($self, $n) = @_;

	Test::More::plan(tests => $n + 2);
	$self->{_planned} = 1;
	$PLANNED = 1;

	return $self;
}

sub todo_alerts {
	my ($self) = @_;

	$self->{_todo_alerts} = 1;
	$ANY_TODO = 1;

	return $self;
}

sub skip_errors_check {
	my ($self, $level, @patterns) = @_;

	my $list = $self->{_skip}{$level} ||= [];
	push @$list, map { ref $_ ? $_ : qr/$_/ } @patterns;

	return $self;
}

###############################################################################
# Files.

sub testdir {
	my ($self) = @_;
	return $self->{_testdir};
}

sub read_file {
	my ($self, $name) = @_;

	open(my $fh, '<', "$self->{_testdir}/$name")
		or die "Can't open $name: $!\n";
	binmode $fh;
	local $/;
	my $content = <$fh>;
	close $fh;

	return defined $content ? $content : '';
}

# like read_file(), but an absent file reads as empty
sub _slurp {
	my ($self, $name) = @_;
	my $c = eval { $self->read_file($name) };
	return defined $c ? $c : '';
}

sub write_file {
	my ($self, $name, $content) = @_;

	open(my $fh, '>', "$self->{_testdir}/$name")
		or die "Can't create $name: $!\n";
	binmode $fh;
	print $fh $content;
	close $fh or die "Can't write $name: $!\n";

	return $self;
}

sub test_globals {
	my ($self) = @_;

	my $dir = $self->{_testdir};
	my $s = "pid $dir/nginx.pid;\n"
		. "error_log $dir/error.log debug;\n";
	$s .= $ENV{TEST_NGINX_GLOBALS} if defined $ENV{TEST_NGINX_GLOBALS};

	return $s;
}

sub test_globals_http {
	my ($self) = @_;

	my $dir = $self->{_testdir};

	# "root" keeps the upstream default of serving files from the test
	# directory, so that tests behave the same with either library
	my $s = "root $dir;\n"
		. "access_log $dir/access.log;\n"
		. "client_body_temp_path $dir/client_body_temp;\n";

	# the *_temp_path directives only exist if the module is built in
	foreach my $m (qw/ fastcgi proxy uwsgi scgi /) {
		$s .= "${m}_temp_path $dir/${m}_temp;\n"
			if $self->has_module($m);
	}

	$s .= $ENV{TEST_NGINX_GLOBALS_HTTP}
		if defined $ENV{TEST_NGINX_GLOBALS_HTTP};

	return $s;
}

sub test_globals_stream {
	my ($self) = @_;
	return defined $ENV{TEST_NGINX_GLOBALS_STREAM}
		? $ENV{TEST_NGINX_GLOBALS_STREAM} : '';
}

sub write_file_expand {
	my ($self, $name, $content) = @_;

	if ($content =~ /%%TEST_GLOBALS%%/) {
		my $g = $self->test_globals();
		$content =~ s/%%TEST_GLOBALS%%/$g/g;
	}
	if ($content =~ /%%TEST_GLOBALS_HTTP%%/) {
		my $g = $self->test_globals_http();
		$content =~ s/%%TEST_GLOBALS_HTTP%%/$g/g;
	}
	if ($content =~ /%%TEST_GLOBALS_STREAM%%/) {
		my $g = $self->test_globals_stream();
		$content =~ s/%%TEST_GLOBALS_STREAM%%/$g/g;
	}

	$content =~ s/%%TESTDIR%%/$self->{_testdir}/g;

	# nominal 4-digit ports 8000-9999 on the loopback address; done
	# before %%PORT_n%% so that real ports are never rewritten again
	$content =~ s/\b127\.0\.0\.1:([89]\d{3})(?!\d)/'127.0.0.1:' . port($1)/ge;

	$content =~ s/%%PORT_(\d+)_UDP%%/port($1, udp => 1)/ge;
	$content =~ s/%%PORT_(\d+)%%/port($1)/ge;

	return $self->write_file($name, $content);
}

###############################################################################
# Ports.

# Maps a nominal port number to a real free port on 127.0.0.1.  The kernel
# picks the port (bind to port 0) for the requested protocol; the port must
# also be bindable with the other protocol, so that %%PORT_n%% and
# %%PORT_n_UDP%% may share it.  The mapping is fixed for the process.

sub _bind {
	my ($proto, $port) = @_;

	return IO::Socket::INET->new(
		Proto => $proto,
		LocalAddr => '127.0.0.1',
		LocalPort => $port,
		($proto eq 'tcp' ? (Listen => 1) : ()),
	);
}

sub port {
	my ($num, %opts) = @_;

	die "port(): nominal port number required\n"
		unless defined $num && $num =~ /^\d+$/;

	return $ports{$num} if defined $ports{$num};

	my ($first, $second) = $opts{udp} ? ('udp', 'tcp') : ('tcp', 'udp');

	for (1 .. 100) {
		my $s = _bind($first, 0) or next;
		my $p = $s->sockport();
		next if !$p || $PORT_TAKEN{$p};
		my $o = _bind($second, $p) or next;
		close $o;
		close $s;

		$PORT_TAKEN{$p} = 1;
		return $ports{$num} = $p;
	}

	die "Can't allocate a free port for $num\n";
}

###############################################################################
# Processes.

sub args {
	my ($self, @args) = @_;
	$self->{_args} = \@args;
	return $self;
}

# pid of every process whose parent is $ppid (Linux /proc); the second
# element of each pair is the command line as set by nginx
sub _children {
	my ($ppid) = @_;

	my @kids;
	opendir(my $dh, '/proc') or return ();
	foreach my $pid (grep { /^\d+$/ } readdir $dh) {
		open(my $fh, '<', "/proc/$pid/stat") or next;
		my $stat = <$fh>;
		close $fh;
		next unless defined $stat;
		# "pid (comm) state ppid ...", comm may contain anything
		$stat =~ s/^.*\)\s+//s;
		my (undef, $parent) = split ' ', $stat;
		next unless defined $parent && $parent == $ppid;

		my $cmd = '';
		if (open(my $ch, '<', "/proc/$pid/cmdline")) {
			local $/;
			$cmd = <$ch> // '';
			close $ch;
			$cmd =~ s/\0+/ /g;
		}
		push @kids, [ $pid, $cmd ];
	}
	closedir $dh;

	return @kids;
}

# A child without nginx's process title (e.g. nginx run under valgrind, whose command line
# the title does not replace) counts as a worker: reload() then tells by the error log.
sub _current_workers {
	my ($master) = @_;
	return map { $_->[0] }
		grep { $_->[1] !~ /^nginx: / || ($_->[1] =~ /worker process/
			&& $_->[1] !~ /shutting down/) } _children($master);
}

# waits up to $timeout seconds for $pid to go away; reaps it if it is ours
sub _wait_gone {
	my ($pid, $own, $timeout) = @_;

	my $deadline = time() + $timeout;

	while (1) {
		if ($own) {
			my $r = waitpid($pid, WNOHANG);
			return 1 if $r == $pid || $r == -1;
		} else {
			return 1 unless kill(0, $pid) || $!{EPERM};
		}
		return 0 if time() >= $deadline;
		sleep(0.05);
	}
}

sub _read_pid_file {
	my ($self) = @_;
	my $c = $self->_slurp('nginx.pid');
	return $c =~ /^\s*(\d+)\s*$/ ? $1 : undef;
}

# TCP ports nginx is expected to listen on according to a config text
sub _listen_ports {
	my ($text) = @_;

	$text =~ s/(^|[\s;{}])#[^\n]*/$1/g;	# comments

	my @ports;
	while ($text =~ /(?:^|(?<=[\s;{}]))listen\s+([^;{}]+);/g) {
		my ($addr, @params) = split ' ', $1;
		next if grep { /^(?:udp|quic)$/ } @params;
		push @ports, $1
			if $addr =~ /^(?:127\.0\.0\.1:|\*:|0\.0\.0\.0:)?(\d+)$/;
	}

	return @ports;
}

# true if something listens on TCP port $port; /proc/net/tcp is consulted
# when available so that the probe does not make a connection to nginx
sub _tcp_listening {
	my ($port) = @_;

	my $hex = sprintf('%04X', $port);
	my $have_proc = 0;

	foreach my $f ('/proc/net/tcp', '/proc/net/tcp6') {
		open(my $fh, '<', $f) or next;
		$have_proc = 1;
		while (my $l = <$fh>) {
			my @f = split ' ', $l;
			next unless @f > 3 && $f[3] eq '0A';	# TCP_LISTEN
			return 1 if $f[1] =~ /:\Q$hex\E$/i;
		}
		close $fh;
	}

	return 0 if $have_proc;

	my $s = IO::Socket::INET->new(
		Proto => 'tcp',
		PeerAddr => "127.0.0.1:$port",
		Timeout => 1,
	);
	return $s ? 1 : 0;
}

sub _conf_path {
	my ($self, $conf) = @_;
	return $conf =~ m!^/! ? $conf : "$self->{_testdir}/$conf";
}

# text of a config file ('' if unreadable)
sub _conf_text {
	my ($self, $conf) = @_;

	open(my $fh, '<', $self->_conf_path($conf)) or return '';
	local $/;
	my $text = <$fh>;
	close $fh;

	return defined $text ? $text : '';
}

sub _log_tail {
	my ($self, $lines) = @_;

	my $s = '';
	foreach my $f (qw/ error.log nginx.stderr /) {
		my @l = split /\n/, $self->_slurp($f);
		next unless @l;
		@l = @l[-$lines .. -1] if @l > $lines;
		$s .= "--- tail of $f ---\n" . join("\n", @l) . "\n";
	}

	return $s || "(no error.log output)\n";
}

sub run {
	my ($self, $conf) = @_;

	$conf = 'nginx.conf' unless defined $conf;

	die "nginx is already running (pid $self->{_master})\n"
		if $self->{_started};

	my $dir = $self->{_testdir};

	# Upstream compatibility: run('path') with a file that is not in the
	# test directory reads it, expands it and uses it as nginx.conf.
	if (! -e $self->_conf_path($conf) && -f $conf) {
		open(my $fh, '<', $conf) or die "Can't open $conf: $!\n";
		local $/;
		my $text = <$fh>;
		close $fh;
		$self->write_file_expand('nginx.conf', $text);
		$conf = 'nginx.conf';
	}

	my $path = $self->_conf_path($conf);
	die "Can't start nginx: no config file $path\n" unless -f $path;

	my $text = $self->_conf_text($conf);

	my @cmd = ($self->{_binary}, '-p', "$dir/", '-c', $conf);
	push @cmd, '-e', "$dir/error.log" if $self->has_version('1.19.5');

	# without %%TEST_GLOBALS%% the pid file / error log would end up in
	# the compiled-in locations; put them into the test directory
	my $g = '';
	$g .= "pid $dir/nginx.pid; " unless $text =~ /^\s*pid\s/m;
	$g .= "error_log $dir/error.log debug; "
		unless $text =~ /^\s*error_log\s/m;
	push @cmd, '-g', $g if $g ne '';

	push @cmd, @{$self->{_args}};

	if ($ENV{TEST_NGINX_VERBOSE}) {
		Test::More::diag("starting: @cmd");
		Test::More::diag("$conf:\n$text");
	}

	unlink "$dir/nginx.pid";

	my $child = fork();
	die "Can't start nginx: fork failed: $!\n" unless defined $child;

	if ($child == 0) {
		# nginx writes its own messages to error.log (-e); whatever
		# still goes to stdout/stderr is kept in nginx.stderr
		open STDIN, '<', '/dev/null';
		open STDOUT, '>>', "$dir/nginx.stderr";
		open STDERR, '>&', \*STDOUT;
		exec { $cmd[0] } @cmd or do {
			print STDERR "exec $cmd[0] failed: $!\n";
			POSIX::_exit(127);
		};
	}

	my @listen = _listen_ports($text);
	my $deadline = time() + $START_TIMEOUT;
	my ($reaped, $status, $failure) = (0, 0, undef);

	while (1) {
		if (!$reaped && waitpid($child, WNOHANG) == $child) {
			($reaped, $status) = (1, $?);
			# a daemonizing nginx exits 0 in the foreground
			if ($status != 0) {
				$failure = 'nginx exited with status '
					. ($status >> 8) . ', signal '
					. ($status & 127);
				last;
			}
		}

		my $pid = $self->_read_pid_file();
		if (defined $pid && (kill(0, $pid) || $!{EPERM})) {
			if (!grep { !_tcp_listening($_) } @listen) {
				$self->{_master} = $pid;
				$self->{_own_master} = ($pid == $child) ? 1 : 0;
				last;
			}
		}

		if (time() >= $deadline) {
			$failure = "timed out after ${START_TIMEOUT}s waiting for "
				. "nginx.pid and listening ports @listen";
			last;
		}

		sleep(0.05);
	}

	if (defined $failure) {
		if (!$reaped) {
			kill 'TERM', $child;
			_wait_gone($child, 1, $TERM_TIMEOUT)
				or do { kill 'KILL', $child; waitpid($child, 0) };
		}
		Test::More::diag("nginx failed to start: $failure\n"
			. $self->_log_tail(20)) if $ENV{TEST_NGINX_VERBOSE};
		die "Can't start nginx: $failure\n";
	}

	$self->{_child} = $child;
	$self->{_conf} = $conf;
	$self->{_started} = 1;

	return $self;
}

sub try_run {
	my ($self, $message) = @_;

	eval { $self->run(); 1 } and return $self;

	my $err = $@;
	$err =~ s/\s+$//;

	# Skips are not supposed to happen silently in this project: say
	# loudly why the whole file is being skipped.
	Test::More::diag("!!! SKIPPING $0: $message\n"
		. "!!! $err\n" . $self->_log_tail(30));

	Test::More::plan(skip_all => $message);
	return $self;
}

sub stop {
	my ($self) = @_;

	return $self unless $self->{_started};

	my $pid = $self->{_master};
	my $own = $self->{_own_master};

	kill 'QUIT', $pid;

	if (!_wait_gone($pid, $own, $QUIT_TIMEOUT)) {
		Test::More::diag("nginx $pid ignored SIGQUIT, sending SIGTERM");
		kill 'TERM', $pid;

		if (!_wait_gone($pid, $own, $TERM_TIMEOUT)) {
			Test::More::diag("nginx $pid ignored SIGTERM, killing");
			my @kids = map { $_->[0] } _children($pid);
			kill 'KILL', $pid, @kids;
			_wait_gone($pid, $own, $TERM_TIMEOUT);
		}
	}

	# a daemonized nginx leaves our foreground child to be reaped
	waitpid($self->{_child}, WNOHANG)
		if !$own && defined $self->{_child};

	$self->{_started} = 0;

	return $self;
}

sub reload {
	my ($self) = @_;

	return $self unless $self->{_started};

	my $master = $self->{_master};
	my $log = "$self->{_testdir}/error.log";
	my $before = -f $log ? $self->_slurp('error.log') : '';
	my $offset = length $before;

	# the workers that accept connections now (not those already shutting down)
	my @old = grep { $before !~ /\b$_#\d+: (?:gracefully shutting down|exiting|exit)\b/ }
		_current_workers($master);

	kill('HUP', $master) or die "Can't send SIGHUP to nginx $master: $!\n";

	my $deadline = time() + $RELOAD_TIMEOUT;

	while (time() < $deadline) {
		sleep(0.05);

		my $new = '';
		if (open(my $fh, '<', $log)) {
			seek($fh, $offset, 0);
			local $/;
			$new = <$fh> // '';
			close $fh;
		}

		next unless $new =~ /reconfiguring(.*)\z/s;
		my $after = $1;

		if ($after =~ /^(.*\[emerg\].*)$/m) {
			Test::More::diag("reload failed, old configuration "
				. "kept: $1");
			return $self;
		}

		# Without a master process (master_process off) the one process
		# re-reads the configuration itself and starts no workers: give
		# it a moment after "reconfiguring".
		if ($self->_single_process()) {
			sleep(0.5 * $F);
			return $self;
		}

		next unless $after =~ /start worker process/;

		# Old workers may still accept connections until they get
		# the shutdown signal; wait until they have stopped doing so.
		my @busy = grep {
			my $p = $_;
			(kill(0, $p) || $!{EPERM}) && $after !~
			    /\b$p#\d+: (?:gracefully shutting down|exiting|exit)\b/
		} @old;
		next if @busy;

		# the new configuration may listen on new ports
		my $text = $self->_conf_text($self->{_conf});
		next if grep { !_tcp_listening($_) } _listen_ports($text);

		return $self;
	}

	Test::More::diag("reload: no new worker generation after "
		. "${RELOAD_TIMEOUT}s");
	return $self;
}

# master_process off, in the configuration or the globals
sub _single_process {
	my ($self) = @_;
	my $text = eval { $self->_conf_text($self->{_conf}) } // '';
	return ($text =~ /^\s*master_process\s+off\s*;/m
		|| ($ENV{TEST_NGINX_GLOBALS} // '') =~ /master_process\s+off/) ? 1 : 0;
}

sub run_daemon {
	my ($self, $code, @args) = @_;

	my $pid = fork();
	die "Can't fork daemon: $!\n" unless defined $pid;

	if ($pid == 0) {
		if (ref $code eq 'CODE') {
			eval { $code->(@args); 1 }
				or print STDERR "daemon died: $@";
			POSIX::_exit(0);
		}
		exec { $code } $code, @args or do {
			print STDERR "exec $code failed: $!\n";
			POSIX::_exit(127);
		};
	}

	push @{$self->{_daemons}}, $pid;

	return $self;
}

sub stop_daemons {
	my ($self) = @_;

	while (my $pid = shift @{$self->{_daemons} || []}) {
		kill 'TERM', $pid;
		next if _wait_gone($pid, 1, $WAIT_TIMEOUT);
		kill 'KILL', $pid;
		waitpid($pid, 0);
	}

	return $self;
}

sub waitforsocket {
	my ($self, $peer) = @_;

	my $deadline = time() + $WAIT_TIMEOUT;

	while (1) {
		my $s = IO::Socket::INET->new(
			Proto => 'tcp',
			PeerAddr => $peer,
			Timeout => 1,
		);
		if ($s) {
			close $s;
			return 1;
		}
		return 0 if time() >= $deadline;
		sleep(0.1);
	}
}

sub waitforfile {
	my ($self, $file, $pid) = @_;

	my $deadline = time() + $WAIT_TIMEOUT;

	while (1) {
		return 1 if -e $file;
		return 0 if $pid && waitpid($pid, WNOHANG) != 0;
		return undef if time() >= $deadline;
		sleep(0.1);
	}
}

###############################################################################
# Logging of client traffic (only with TEST_NGINX_VERBOSE).

sub _log_traffic {
	my ($prefix, $msg) = @_;

	return unless $ENV{TEST_NGINX_VERBOSE};
	return unless defined $msg;

	my $len = length $msg;
	$msg = substr($msg, 0, 2048) . "... ($len bytes total)" if $len > 2048;

	# make control characters visible, keep line structure
	$msg =~ s/([^\x20-\x7e\n])/sprintf('\\x%02x', ord $1)/ge;

	Test::More::diag(join "\n", map { "$prefix $_" } split /\n/, $msg);
}

sub log_out { _log_traffic('>>', @_) }
sub log_in  { _log_traffic('<<', @_) }

###############################################################################
# HTTP client.

sub http_get {
	my ($uri, %extra) = @_;
	return http("GET $uri HTTP/1.0\r\nHost: localhost\r\n\r\n", %extra);
}

sub http_head {
	my ($uri, %extra) = @_;
	return http("HEAD $uri HTTP/1.0\r\nHost: localhost\r\n\r\n", %extra);
}

sub http {
	my ($request, %extra) = @_;

	my $s = http_start($request, %extra);
	return $s if $extra{start} || !defined $s;
	return http_end($s, %extra);
}

sub _write_all {
	my ($s, $data) = @_;

	my $off = 0;
	while ($off < length $data) {
		my $n = syswrite($s, $data, length($data) - $off, $off);
		die "write failed: $!\n" unless defined $n;
		$off += $n;
	}
}

sub http_start {
	my ($request, %extra) = @_;

	my $timeout = $HTTP_TIMEOUT;

	# IO::Socket options (PeerAddr, LocalAddr, ...) are passed through
	my %sockopts = map { $_ => $extra{$_} }
		grep { /^[A-Z]/ && !/^SSL/ } keys %extra;

	my $s = eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		local $SIG{PIPE} = sub { die "sigpipe\n" };
		alarm($timeout);

		my $sock = $extra{socket};
		unless ($sock) {
			$sockopts{PeerAddr} = '127.0.0.1:'
				. port($extra{SSL} ? 8443 : 8080)
				unless defined $sockopts{PeerAddr};
			$sock = IO::Socket::INET->new(
				Proto => 'tcp',
				%sockopts,
			) or die "Can't connect to $sockopts{PeerAddr}: $!\n";
		}

		if ($extra{SSL}) {
			require IO::Socket::SSL;
			IO::Socket::SSL->start_SSL($sock,
				SSL_verify_mode =>
					IO::Socket::SSL::SSL_VERIFY_NONE(),
				map { $_ => $extra{$_} }
					grep { /^SSL_/ } keys %extra)
				or die "SSL handshake failed\n";
		}

		log_out($request);
		_write_all($sock, $request);

		sleep($extra{sleep}) if $extra{sleep};

		if (defined $extra{body} && !$extra{aborted}) {
			log_out($extra{body});
			_write_all($sock, $extra{body});
		}

		alarm(0);
		$sock;
	};
	alarm(0);

	if (!defined $s) {
		my $err = $@ || "unknown error\n";
		Test::More::diag("http(): $err");
		return undef;
	}

	return $s;
}

sub http_end {
	my ($s, %extra) = @_;

	my $timeout = $HTTP_TIMEOUT;
	my $reply = '';

	my $ok = eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		local $SIG{PIPE} = sub { die "sigpipe\n" };
		alarm($timeout);

		while (1) {
			my $n = sysread($s, my $buf, 65536);
			die "read failed: $!\n" unless defined $n;
			last if $n == 0;
			$reply .= $buf;
		}

		alarm(0);
		1;
	};
	alarm(0);

	close $s;

	if (!$ok) {
		Test::More::diag("http(): " . ($@ || "unknown error\n"));
		log_in($reply) if length $reply;
		return undef;
	}

	log_in($reply);
	return $reply;
}

# body of an HTTP response, with chunked transfer encoding removed
sub http_content {
	my ($text) = @_;

	return undef unless defined $text;

	my ($head, $body) = $text =~ /^(.*?)\x0d?\x0a\x0d?\x0a(.*)\z/s
		or return undef;

	return $body unless $head =~ /^Transfer-Encoding:\s*chunked/mi;

	my $content = '';
	my $last = 0;

	while ($body =~ s/^\x0d?\x0a?([0-9a-fA-F]+)[^\x0a]*\x0a//) {
		my $len = hex $1;
		if ($len == 0) {
			$last = 1;
			last;
		}
		$content .= substr($body, 0, $len, '');
	}

	$content .= '[no-last-chunk]' unless $last;

	return $content;
}

sub http_gzip_request {
	my ($uri) = @_;
	return http("GET $uri HTTP/1.1\r\nHost: localhost\r\n"
		. "Connection: close\r\nAccept-Encoding: gzip\r\n\r\n");
}

sub http_gzip_like {
	my ($text, $re, $name) = @_;

	require IO::Uncompress::Gunzip;

	my $in = http_content($text);
	my $out;
	IO::Uncompress::Gunzip::gunzip(\$in => \$out)
		if defined $in;

	local $Test::Builder::Level = $Test::Builder::Level + 1;
	return Test::More::like($out, $re, $name);
}

1;

__END__

=head1 NAME

Test::Nginx - minimal nginx-tests compatible harness for this project

=head1 SYNOPSIS

    use Test::More;
    BEGIN { use FindBin; chdir($FindBin::Bin); }
    BEGIN { push @INC, "$FindBin::Bin/lib" }
    use Test::Nginx;

    my $t = Test::Nginx->new()->has(qw/http/);
    $t->write_file_expand('nginx.conf', <<'EOF');
    %%TEST_GLOBALS%%
    daemon off;
    events {}
    http {
        %%TEST_GLOBALS_HTTP%%
        server { listen 127.0.0.1:8080; location / { return 204; } }
    }
    EOF
    $t->run()->plan(1);
    like(http_get('/'), qr/204/, 'no content');

=head1 DESCRIPTION

An independent, core-Perl-only implementation of the subset of the
nginx-tests C<Test::Nginx> API used by this project's test suite.  Test files
add this directory to the I<end> of C<@INC>, so an upstream nginx-tests
library given with C<prove -I> takes precedence.

Environment: C<TEST_NGINX_BINARY> (default F</usr/sbin/nginx>),
C<TEST_NGINX_GLOBALS>, C<TEST_NGINX_GLOBALS_HTTP>,
C<TEST_NGINX_GLOBALS_STREAM>, C<TEST_NGINX_VERBOSE>, C<TEST_NGINX_LEAVE>,
C<TEST_NGINX_CATLOG>.  No modules are ever loaded automatically; dynamic
modules (including a C<--with-X=dynamic> one) count as present only when
loaded with C<load_module> in C<TEST_NGINX_GLOBALS>.

=head1 METHODS

=over

=item new()

Creates the object and a temporary test directory (removed at exit unless
C<TEST_NGINX_LEAVE> is set).  Bails out if the nginx binary is missing.

=item has(@features)

Skips the whole test file (C<plan skip_all =E<gt> "no FEATURE">) unless
every feature is available according to C<has_module> or C<has_feature>.
Returns the object.

=item has_module($name)

True if the binary has the module: default http modules unless
C<--without-http_NAME_module>; optional ones with C<--with-http_NAME_module>;
C<http>, C<ssl>, C<http_v2>, C<stream>, C<stream_*>, C<mail>, C<debug>,
C<cache>, C<pcre>, C<sni>; or a module loaded through C<TEST_NGINX_GLOBALS>.

=item has_feature($name)

C<unix>, C<udp>, C<symlink>, C<openssl:VERSION>, C<socket_ssl*>, C<cryptx>.

=item has_version($version)

True if the nginx version is at least C<$version>.

=item has_daemon($program)

Skips the test file unless C<$program> is found in C<PATH>.

=item plan($n)

C<Test::More::plan(tests =E<gt> $n + 2)>; the two extra tests, "no alerts"
and "no sanitizer errors", run once at teardown over the error logs of all
instances of the process.  An instance still alive when END blocks run (kept
by a named sub that uses the file's C<$t>, for example) adds a failing test:
the upstream library runs these checks when the object is destroyed, and for
such an object that happens only in global destruction, too late.

=item todo_alerts()

Marks the "no alerts" check as TODO.

=item skip_errors_check($level, @regexes)

Lines of C<[$level]> (e.g. C<emerg>, C<alert>) matching one of the regexes
(all lines of that level if none is given) are not reported by "no alerts".

=item write_file($name, $content), read_file($name), testdir()

Plain file helpers for the test directory.

=item write_file_expand($name, $content)

Writes a file after expanding C<%%TEST_GLOBALS%%>, C<%%TEST_GLOBALS_HTTP%%>,
C<%%TEST_GLOBALS_STREAM%%>, C<%%TESTDIR%%>, C<%%PORT_N%%>, C<%%PORT_N_UDP%%>
and C<127.0.0.1:8000>..C<127.0.0.1:9999>.

=item test_globals(), test_globals_http(), test_globals_stream()

The texts substituted for the corresponding placeholders.

=item run($conf = 'nginx.conf')

Starts nginx with the config from the test directory and waits until its pid
file exists and its TCP listen ports are open; dies with "Can't start nginx"
otherwise.  A path outside the test directory is read and expanded into
F<nginx.conf> (upstream behaviour).

=item try_run($message)

Like C<run>, but skips the test file with C<$message> on failure, after
printing a prominent diagnostic with the end of the error log.

=item args(@args)

Extra command line arguments for nginx.

=item stop(), reload()

C<stop> shuts nginx down (QUIT, then TERM, then KILL) and waits for it;
C<reload> sends HUP and waits until the new workers run and the old ones
stopped accepting connections.

=item run_daemon($cmd_or_coderef, @args), stop_daemons()

Starts a helper process (terminated at teardown) / terminates them now.

=item waitforsocket('host:port'), waitforfile($path, $pid)

Poll for a connectable socket / an existing file (about 5 seconds).

=back

=head1 FUNCTIONS

=over

=item port($n, udp =E<gt> 1)

Real free port for nominal port C<$n>, fixed for the process.

=item http($request, %extra)

Sends C<$request> (then C<body> after C<sleep> seconds, if given) to
127.0.0.1:port(8080) or C<PeerAddr>/C<socket>, returns the whole response or
undef on error.  C<start =E<gt> 1> returns the socket instead; C<SSL> needs
IO::Socket::SSL.  Each half gives up after 8 seconds (times
C<TEST_NGINX_TIMEOUT_FACTOR>); as upstream, there is no option to wait longer.

=item http_get($uri, %extra), http_head($uri, %extra)

HTTP/1.0 GET / HEAD requests through C<http>.

=item http_start, http_end, http_content, http_gzip_request, http_gzip_like

Exportable on request: the two halves of C<http>, response body with
chunked encoding removed, and gzip helpers.

=item log_in($msg), log_out($msg)

Print traffic as test diagnostics when C<TEST_NGINX_VERBOSE> is set.

=back

=cut
