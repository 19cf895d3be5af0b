package GptAuth;

# Helpers for the gpt_auth Test::Nginx suite.
#
# The session cookie is minted here from docs/cookie-format.md alone, with core Digest::SHA and
# MIME::Base64: an independent implementation that checks the Rust codec.

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT = qw/ new_key_bytes key_line key_id mint_cookie request status header
	headers body conf_test set_cookies verify_cookie state_kid state_encode state_decode
	log_offset log_since urlencode urldecode query_params read_reply reload_and_wait /;

# Everything here works the same with the project's harness (t/lib/Test/Nginx.pm) and with the
# upstream nginx-tests library: it uses only the API both have.

use Digest::SHA qw/ sha256 hmac_sha256 /;
use Errno qw/ EINTR /;
use IO::Select;
use JSON::PP;
use MIME::Base64 qw/ encode_base64 encode_base64url decode_base64url /;
use Test::More qw//;
use Test::Nginx qw/ http port /;
use Time::HiRes qw//;

# TEST_NGINX_TIMEOUT_FACTOR scales the waits for nginx (as in the project's harness), e.g. under
# valgrind.
my $FACTOR = ($ENV{TEST_NGINX_TIMEOUT_FACTOR} // '') =~ /^\d+(?:\.\d+)?$/
	? $ENV{TEST_NGINX_TIMEOUT_FACTOR} : 1;

# 32 random bytes (a key's raw secret).
sub new_key_bytes {
	open(my $fh, '<:raw', '/dev/urandom') or die "urandom: $!";
	read($fh, my $bytes, 32) == 32 or die "short read from urandom";
	close $fh;
	return $bytes;
}

# One key-file line for raw key bytes.
sub key_line {
	my ($bytes) = @_;
	return encode_base64($bytes, '');
}

# Key id: base64url(first 6 bytes of SHA-256(secret)).
sub key_id {
	my ($bytes) = @_;
	return encode_base64url(substr(sha256($bytes), 0, 6));
}

# mint_cookie(key => $bytes, email => $addr, [name => 'gpt_auth'], [iat => t], [exp => t],
#             [version => '1'], [kid => override])
# Returns the cookie value: 1.<kid>.<iat>.<exp>.<b64url(email)>.<b64url(mac)>
sub mint_cookie {
	my (%a) = @_;
	my $now = time();
	my $name = $a{name} // 'gpt_auth';
	my $iat = $a{iat} // $now;
	my $exp = $a{exp} // ($iat + 3600);
	my $version = $a{version} // '1';
	my $kid = $a{kid} // key_id($a{key});
	# email_b64: the address field exactly as given (for non-canonical encodings)
	my $body = join('.', $version, $kid, $iat, $exp,
		$a{email_b64} // encode_base64url($a{email}));
	my $mac = hmac_sha256("$name=$body", $a{key});
	return $body . '.' . encode_base64url($mac);
}

# request($uri, cookie => 'a=b', accept => 'text/html', method => 'GET',
#         headers => ["X-A: 1", ...], host => 'localhost', body => '...', port => 8080,
#         timeout => seconds (default: the harness's http(), 8 s))
sub request {
	my ($uri, %a) = @_;
	my $method = $a{method} // 'GET';
	my $host = $a{host} // 'localhost';
	my $r = "$method $uri HTTP/1.0\r\nHost: $host\r\n";
	$r .= "Cookie: $a{cookie}\r\n" if defined $a{cookie};
	$r .= "Accept: $a{accept}\r\n" if defined $a{accept};
	$r .= "$_\r\n" for @{ $a{headers} // [] };
	if (defined $a{body}) {
		$r .= "Content-Length: " . length($a{body}) . "\r\n";
	}
	$r .= "\r\n";
	$r .= $a{body} if defined $a{body};
	my %opts;
	$opts{PeerAddr} = '127.0.0.1:' . port($a{port}) if defined $a{port};
	if (defined $a{timeout}) {
		my $s = http($r, %opts, start => 1) or return '';
		return read_reply($s, $a{timeout}) // '';
	}
	return http($r, %opts) // '';
}

# read_reply($socket, $seconds): the answer on a (plain TCP) socket from http_start() or
# http(..., start => 1), read until the server closes the connection; the socket is closed.
# Undef (with a diag) after $seconds (default 8) or on an error. For answers that take longer
# than the harness's http_end() waits: upstream's always gives up after 8 s.
sub read_reply {
	my ($s, $timeout) = @_;
	$timeout //= 8;
	my $deadline = Time::HiRes::time() + $timeout;
	my $sel = IO::Select->new($s);
	my ($reply, $error) = ('', undef);
	while (1) {
		my $left = $deadline - Time::HiRes::time();
		if ($left <= 0 || !$sel->can_read($left)) {
			$error = "no end of the answer after ${timeout}s";
			last;
		}
		my $n = sysread($s, my $buf, 65536);
		if (!defined $n) {
			next if $! == EINTR;
			$error = "read failed: $!";
			last;
		}
		last if $n == 0;
		$reply .= $buf;
	}
	close $s;
	Test::Nginx::log_in($reply) if length $reply;
	if (defined $error) {
		Test::More::diag("read_reply(): $error");
		return undef;
	}
	return $reply;
}

sub status {
	my ($r) = @_;
	return $r =~ m{^HTTP/\d\.\d (\d{3})} ? $1 : 0;
}

# First value of a response header (case-insensitive name), or undef.
sub header {
	my ($r, $name) = @_;
	my ($head) = split(/\r\n\r\n/, $r // '', 2);
	$head //= '';
	return $1 if $head =~ /^\Q$name\E:[ \t]*(.*?)\r?$/mi;
	return undef;
}

# All values of a response header.
sub headers {
	my ($r, $name) = @_;
	my ($head) = split(/\r\n\r\n/, $r // '', 2);
	$head //= '';
	return ($head =~ /^\Q$name\E:[ \t]*(.*?)\r?$/mgi);
}

# Set-Cookie headers as { name => { value => ..., attrs => { lc(attr) => value|1 } } }.
sub set_cookies {
	my ($r) = @_;
	my %c;
	for my $sc (headers($r, 'Set-Cookie')) {
		my ($pair, @attrs) = split(/;\s*/, $sc);
		my ($n, $v) = split(/=/, $pair, 2);
		my %attr = map { my ($k, $val) = split(/=/, $_, 2); (lc $k => $val // 1) } @attrs;
		$c{$n} = { value => $v, attrs => \%attr };
	}
	return \%c;
}

sub body {
	my ($r) = @_;
	my (undef, $b) = split(/\r\n\r\n/, $r, 2);
	return $b // '';
}

# verify_cookie(key => $bytes, value => $cookie_value, [name => 'gpt_auth'])
# The session cookie's fields if its MAC is right (docs/cookie-format.md), else undef:
# { version, kid, iat, exp, email }.
sub verify_cookie {
	my (%a) = @_;
	my $name = $a{name} // 'gpt_auth';
	my @f = split /\./, $a{value} // '', -1;
	return undef unless @f == 6;
	my $body = join('.', @f[0 .. 4]);
	return undef unless $f[5] eq encode_base64url(hmac_sha256("$name=$body", $a{key}));
	return { version => $f[0], kid => $f[1], iat => $f[2], exp => $f[3],
		email => decode_base64url($f[4]) };
}

# The login-state cookie, as specified in crates/gpt-auth-core/STATE-COOKIE.md (the Perl there).

sub state_kid { encode_base64url(substr(sha256($_[0]), 0, 6)) }

# state_encode($secret, $cookie_name, \%state) -> value
sub state_encode {
	my ($secret, $name, $s) = @_;
	my $json = JSON::PP->new->utf8->canonical(0);
	my $payload = '{' . join(',', map { $json->encode($_) . ':' . $json->encode($s->{$_}) }
		qw(sid nonce verifier return_url provider)) . ',"exp":' . ($s->{exp} + 0) . '}';
	my $body = 's1.' . state_kid($secret) . '.' . encode_base64url($payload);
	return "$body." . encode_base64url(hmac_sha256("$name=$body", $secret));
}

# state_decode($secret, $cookie_name, $value, $now) -> \%state or undef
sub state_decode {
	my ($secret, $name, $value, $now) = @_;
	return undef if length($value) > 2048;
	my @f = split /\./, $value, -1;
	return undef unless @f == 4 && $f[0] eq 's1' && $f[1] eq state_kid($secret);
	my $body = join('.', @f[0 .. 2]);
	my $mac = encode_base64url(hmac_sha256("$name=$body", $secret));
	return undef unless length($f[3]) == 43 && $f[3] eq $mac;
	my $s = eval { JSON::PP->new->utf8->decode(decode_base64url($f[2])) } or return undef;
	return undef unless ref $s eq 'HASH' && keys %$s == 6
		&& 6 == grep({ exists $s->{$_} } qw(sid nonce verifier return_url provider exp))
		&& $s->{sid} =~ /\A[A-Za-z0-9_-]{21}[AQgw]\z/ && $name =~ /_state_\Q$s->{sid}\E\z/;
	return $now < $s->{exp} ? $s : undef;
}

# Percent-encoding of everything but RFC 3986 unreserved characters, and its inverse (with
# "+" as a space, as in forms).
sub urlencode {
	my ($s) = @_;
	$s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord($1))/ge;
	return $s;
}

sub urldecode {
	my ($s) = @_;
	$s =~ tr/+/ /;
	$s =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
	return $s;
}

# The query parameters of a URL (or query string) as a hash of decoded values, plus the
# order of the names under the key "" (an array ref).
sub query_params {
	my ($url) = @_;
	my $q = $url =~ /\?(.*)\z/s ? $1 : $url;
	$q =~ s/#.*//s;
	my %p = ('' => []);
	for my $pair (split /&/, $q) {
		my ($k, $v) = split /=/, $pair, 2;
		$k = urldecode($k);
		push @{ $p{''} }, $k;
		$p{$k} = urldecode($v // '') unless exists $p{$k};
	}
	return \%p;
}

# Size of the error log now (a mark), and what was logged after a mark (without the [debug]
# lines of a debug build, which would only bury the lines a test looks for).
sub log_offset {
	my ($t) = @_;
	return -s ($t->testdir() . '/error.log') // 0;
}

sub log_since {
	my ($t, $offset) = @_;
	open(my $fh, '<:raw', $t->testdir() . '/error.log') or return '';
	seek($fh, $offset, 0);
	local $/;
	my $log = <$fh> // '';
	close $fh;
	return join('', grep { m{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(?!debug\])} }
		split /^/m, $log);
}

# reload_and_wait($t): reloads nginx ($t->reload()) and waits until it has acted on it, since
# the upstream library's reload() only sends SIGHUP (the project's waits already). Returns 1
# once a new worker runs and every old one has stopped accepting connections (it logged
# "gracefully shutting down", says so in its process title, or is gone): the next request sees
# the new configuration. Returns 0 if nginx refused the new configuration (an [emerg] line; the
# old workers go on). Undef, with a diag, if neither happened within 10 s.
sub reload_and_wait {
	my ($t) = @_;
	my $mark = log_offset($t);
	my $master = eval { $t->read_file('nginx.pid') } // '';
	($master) = $master =~ /^\s*(\d+)/ or die "reload_and_wait(): no nginx.pid\n";
	my $before = _log_from($t, 0);
	my @old = grep { $before !~ /\b$_#\d+: (?:gracefully shutting down|exiting|exit)\b/ }
		map { $_->[0] } grep { _accepting($_->[1]) } _children($master);

	$t->reload();

	my $deadline = Time::HiRes::time() + 10 * $FACTOR;
	while (1) {
		my $log = _log_from($t, $mark);
		return 0 if $log =~ /\[emerg\]/;
		my %old = map { $_ => 1 } @old;
		my $new = !@old && $log =~ /reconfiguring/
			|| $log =~ /reconfiguring.*start worker process \d+/s
			|| grep { !$old{$_->[0]} && $_->[1] =~ /worker process/ && _accepting($_->[1]) }
				_children($master);
		my @busy = grep {
			my $pid = $_;
			my $title = _title($pid);
			defined $title && _accepting($title)
				&& $log !~ /\b$pid#\d+: (?:gracefully shutting down|exiting|exit)\b/
		} @old;
		return 1 if $new && !@busy;
		if (Time::HiRes::time() > $deadline) {
			Test::More::diag('reload_and_wait(): ' . ($new ? '' : 'no new worker, ')
				. (@busy ? "old workers @busy still accepting, " : '')
				. 'after ' . 10 * $FACTOR . 's');
			return undef;
		}
		Time::HiRes::sleep(0.05);
	}
}

# The error log from a byte offset on.
sub _log_from {
	my ($t, $offset) = @_;
	open(my $fh, '<:raw', $t->testdir() . '/error.log') or return '';
	seek($fh, $offset, 0);
	local $/;
	my $log = <$fh> // '';
	close $fh;
	return $log;
}

# [pid, title] of each live child of $ppid (Linux /proc).
sub _children {
	my ($ppid) = @_;
	opendir(my $dh, '/proc') or return ();
	my @kids;
	for my $pid (grep { /^\d+$/ } readdir $dh) {
		open(my $fh, '<', "/proc/$pid/stat") or next;
		my $stat = <$fh> // '';
		close $fh;
		$stat =~ s/^.*\)\s+//s;	# "pid (comm) state ppid ..."
		my ($state, $parent) = split ' ', $stat;
		next unless defined $parent && $parent == $ppid && $state ne 'Z';
		my $title = _title($pid);
		push @kids, [ $pid, $title ] if defined $title;
	}
	closedir $dh;
	return @kids;
}

# The process title (command line) of a live process, or undef if it is gone.
sub _title {
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/stat") or return undef;
	my $stat = <$fh> // '';
	close $fh;
	return undef if $stat =~ /\)\s+Z\s/;
	open($fh, '<', "/proc/$pid/cmdline") or return undef;
	local $/;
	my $cmd = <$fh> // '';
	close $fh;
	$cmd =~ s/\0+/ /g;
	return $cmd;
}

# Whether a child with this title may accept connections: a worker not shutting down, or a
# process without nginx's titles (nginx under valgrind keeps the valgrind command line).
sub _accepting {
	my ($title) = @_;
	return $title !~ /^nginx: / || ($title =~ /worker process/ && $title !~ /shutting down/);
}

# conf_test($t, $name, $conf): writes $conf (expanded) and runs `nginx -t` on it; returns
# ($exit_ok, $output) where $output is what nginx printed (emerg/warn lines).
sub conf_test {
	my ($t, $name, $conf) = @_;
	$t->write_file_expand($name, $conf);
	my $d = $t->testdir();
	# `nginx -t` writes the pid file it is given: never the running (or next) nginx's, which
	# the harness reads (upstream's run() takes an existing nginx.pid as nginx having started).
	my $text = $t->read_file($name);
	if ($text =~ s{^(\s*pid\s+)\S*nginx\.pid;}{$1$d/$name.pid;}m) {
		$t->write_file($name, $text);
	}
	my $bin = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
	my $out = `$bin -t -p $d/ -c $d/$name -e $d/$name.err 2>&1`;
	my $ok = $? == 0;
	return ($ok, $out);
}

1;
