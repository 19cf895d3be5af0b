package FakeIdP;

# A scriptable OpenID provider for the gpt_auth Test::Nginx suite (core Perl only).
#
# It listens on 127.0.0.1:port(N) in a daemon started with $t->run_daemon() and answers every
# request from a response file the test writes into the test directory (per path: status,
# headers, body, an optional delay, or "close without answering"); paths without a response
# file get 404. Every request it receives is appended to a log the test reads back (method,
# path, query, headers, body), to check what nginx sent: client authentication, the PKCE
# verifier, the redirect URI, how many discovery and JWKS fetches happened.
#
# Two paths have built-in behaviour, so that the suite can play a whole login like a browser:
#
# - ".../authorize" (unless a response file exists for it): an authorization endpoint that
#   needs no user. It checks the request (response_type=code, client_id, redirect_uri, state,
#   nonce, code_challenge with method S256), issues a one-time code bound to the client,
#   redirect URI and code challenge, and answers 302 to redirect_uri?code=...&state=...
#   (plus &iss=... after authorize_iss()).
#
# - a token path whose response file has "check": before answering with the configured body,
#   the exchange must carry a code issued by .../authorize and not used before, the same
#   redirect_uri, a code_verifier whose S256 is the code's challenge and, if the file names a
#   client, that client's credentials (client_secret_basic or client_secret_post). Otherwise
#   the answer is 400 {"error":"invalid_grant"} (401 invalid_client for bad credentials), as a
#   real provider answers.
#
#     my $idp = FakeIdP->new($t, 8081);
#     $idp->start();
#     $idp->respond('/corp/jwks', body => $jwks, headers => { 'Cache-Control' => 'max-age=600' });
#     $idp->respond('/corp/token', status => 500, body => 'oops');
#     $idp->respond('/slow/token', delay => 12, body => '{}');
#     $idp->respond('/dead/token', close => 1);
#     $idp->respond('/big/token', body => $json, framing => 'chunked');
#     my @r = $idp->requests(path => '/corp/token');   # { method, path, query, headers, body }

use warnings;
use strict;

use Digest::SHA qw/ sha256 /;
use Errno qw/ EINTR /;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw/ encode_base64url decode_base64 /;
use POSIX qw/ WNOHANG /;
use Fcntl qw/ :flock /;

use Test::Nginx ();

my $JSON = JSON::PP->new->canonical->utf8;

###############################################################################
# Test side.

# FakeIdP->new($t, $nominal_port)
sub new {
	my ($class, $t, $num) = @_;
	my $dir = $t->testdir() . "/idp-$num";
	mkdir $dir;
	mkdir "$dir/resp";
	return bless { t => $t, num => $num, port => Test::Nginx::port($num), dir => $dir }, $class;
}

sub port { $_[0]{port} }
sub dir { $_[0]{dir} }

# Absolute URL of a path on this provider.
sub url {
	my ($self, $path) = @_;
	return "http://127.0.0.1:$self->{port}" . ($path // '');
}

sub start {
	my ($self) = @_;
	$self->{t}->run_daemon(\&serve, $self->{dir}, $self->{port});
	$self->{t}->waitforsocket("127.0.0.1:$self->{port}")
		or die "fake provider did not start on port $self->{port}\n";
	return $self;
}

sub _resp_file {
	my ($dir, $path) = @_;
	return "$dir/resp/" . unpack('H*', $path);
}

# respond($path, status => 200, body => '', headers => { name => value | undef },
#         delay => seconds, close => 1, check => 1, client => [id, secret, method],
#         framing => 'length' (default) | 'chunked' | 'close' (no length, end at close)
#                    | 'chunked_cut' (chunked, closed before the last chunk))
# Replaces the answer for $path (atomically: a request never sees half a file).
sub respond {
	my ($self, $path, %a) = @_;
	my %spec = (
		status => $a{status} // 200,
		body => $a{body} // '',
		headers => $a{headers} // {},
		delay => $a{delay} // 0,
		close => $a{close} ? 1 : 0,
		check => $a{check} ? 1 : 0,
		client => $a{client},
		framing => $a{framing} // 'length',
	);
	# Content-Type: application/json unless given (undef: no Content-Type at all)
	my %h = %{ $spec{headers} };
	$h{'Content-Type'} = 'application/json' unless exists $h{'Content-Type'};
	delete $h{$_} for grep { !defined $h{$_} } keys %h;
	$spec{headers} = \%h;
	my $file = _resp_file($self->{dir}, $path);
	open(my $fh, '>:raw', "$file.tmp") or die "$file.tmp: $!";
	print $fh $JSON->encode(\%spec);
	close $fh or die "$file.tmp: $!";
	rename("$file.tmp", $file) or die "rename $file: $!";
	return $self;
}

# Removes the answer for $path (it gets 404 again).
sub forget {
	my ($self, $path) = @_;
	unlink _resp_file($self->{dir}, $path);
	return $self;
}

# authorize_iss('/corp', URL) makes /corp/authorize add &iss=URL to its redirect (RFC 9207);
# authorize_iss('/corp', undef) stops it.
sub authorize_iss {
	my ($self, $prefix, $iss) = @_;
	my $file = "$self->{dir}/iss-" . unpack('H*', $prefix);
	if (defined $iss) {
		open(my $fh, '>', $file) or die "$file: $!";
		print $fh $iss;
		close $fh;
	} else {
		unlink $file;
	}
	return $self;
}

# A discovery document for the issuer $self->url($prefix) with endpoints under $prefix;
# %over replaces or (with undef) removes members.
sub discovery_doc {
	my ($self, $prefix, %over) = @_;
	my $base = $self->url($prefix);
	my %doc = (
		issuer => $base,
		authorization_endpoint => "$base/authorize",
		token_endpoint => "$base/token",
		jwks_uri => "$base/jwks",
		response_types_supported => ['code'],
		subject_types_supported => ['public'],
		id_token_signing_alg_values_supported => ['RS256', 'ES256'],
		code_challenge_methods_supported => ['S256'],
		token_endpoint_auth_methods_supported =>
			['client_secret_basic', 'client_secret_post'],
	);
	for my $k (keys %over) {
		if (defined $over{$k}) { $doc{$k} = $over{$k} } else { delete $doc{$k} }
	}
	return $JSON->encode(\%doc);
}

# Serves discovery_doc($prefix, %over) at $prefix/.well-known/openid-configuration.
sub serve_discovery {
	my ($self, $prefix, %over) = @_;
	my $headers = delete $over{headers};
	return $self->respond("$prefix/.well-known/openid-configuration",
		body => $self->discovery_doc($prefix, %over),
		($headers ? (headers => $headers) : ()));
}

# Every request received so far, oldest first, optionally filtered by method and/or path
# (exact, or a qr//). Each is { method, path, query, headers => { lc name => value }, body }.
sub requests {
	my ($self, %f) = @_;
	my @all;
	if (open(my $fh, '<:raw', "$self->{dir}/requests.log")) {
		flock($fh, LOCK_SH);
		while (my $line = <$fh>) {
			push @all, $JSON->decode($line);
		}
		close $fh;
	}
	return grep {
		(!defined $f{method} || $_->{method} eq $f{method})
		&& (!defined $f{path} || (ref $f{path} ? $_->{path} =~ $f{path}
			: $_->{path} eq $f{path}))
	} @all;
}

sub count {
	my ($self, %f) = @_;
	return scalar(my @r = $self->requests(%f));
}

# The most recent request matching the filter, or undef.
sub last_request {
	my ($self, %f) = @_;
	my @r = $self->requests(%f);
	return $r[-1];
}

###############################################################################
# Helpers shared by both sides.

sub _urldecode {
	my ($s) = @_;
	$s =~ tr/+/ /;
	$s =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
	return $s;
}

sub _urlencode {
	my ($s) = @_;
	$s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord($1))/ge;
	return $s;
}

# Decodes an application/x-www-form-urlencoded string into a hash (first value wins) .
sub form_decode {
	my ($s) = @_;
	my %h;
	for my $pair (split /&/, $s // '') {
		next if $pair eq '';
		my ($k, $v) = split /=/, $pair, 2;
		$k = _urldecode($k);
		$h{$k} = _urldecode($v // '') unless exists $h{$k};
	}
	return \%h;
}

###############################################################################
# Server side (runs in the daemon process and its per-connection children).

my %KIDS;

sub serve {
	my ($dir, $port) = @_;

	$SIG{PIPE} = 'IGNORE';
	$SIG{CHLD} = sub {
		while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
			delete $KIDS{$pid};
		}
	};
	$SIG{TERM} = sub {
		kill 'TERM', keys %KIDS;
		POSIX::_exit(0);
	};

	my $server = IO::Socket::INET->new(
		Proto => 'tcp',
		LocalAddr => "127.0.0.1:$port",
		Listen => 128,
		ReuseAddr => 1,
	) or die "fake provider: cannot listen on 127.0.0.1:$port: $!\n";

	while (1) {
		my $client = $server->accept();
		unless ($client) {
			next if $! == EINTR;
			die "fake provider: accept: $!\n";
		}
		my $pid = fork();
		if (!defined $pid) {
			close $client;
			next;
		}
		if ($pid == 0) {
			$SIG{TERM} = 'DEFAULT';
			$SIG{CHLD} = 'DEFAULT';
			close $server;
			eval { _handle($dir, $client); 1 }
				or print STDERR "fake provider: $@";
			close $client;
			POSIX::_exit(0);
		}
		$KIDS{$pid} = 1;
		close $client;
	}
}

sub _read_request {
	my ($c) = @_;
	my $buf = '';
	local $SIG{ALRM} = sub { die "read timeout\n" };
	alarm(10);
	while ($buf !~ /\r\n\r\n/) {
		my $n = sysread($c, $buf, 65536, length $buf);
		return undef if !$n && $buf eq '';	# a connect-only probe (waitforsocket)
		die "connection closed before the headers\n" unless $n;
	}
	my ($head, $body) = split /\r\n\r\n/, $buf, 2;
	my ($line, @lines) = split /\r\n/, $head;
	my ($method, $target) = $line =~ m{^(\S+) (\S+) HTTP/\d\.\d$}
		or die "bad request line: $line\n";
	my %h;
	for (@lines) {
		my ($n, $v) = /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
		$n = lc $n;
		$h{$n} = exists $h{$n} ? "$h{$n}, $v" : $v;
	}
	my $len = $h{'content-length'} // 0;
	while (length($body) < $len) {
		my $n = sysread($c, $body, $len - length($body), length $body);
		die "connection closed in the body\n" unless $n;
	}
	alarm(0);
	my ($path, $query) = split /\?/, $target, 2;
	return {
		method => $method,
		target => $target,
		path => $path,
		query => $query // '',
		headers => \%h,
		body => $body,
		time => time(),
	};
}

sub _log_request {
	my ($dir, $req) = @_;
	open(my $fh, '>>:raw', "$dir/requests.log") or die "requests.log: $!";
	flock($fh, LOCK_EX);
	print $fh $JSON->encode($req) . "\n";
	close $fh;
}

sub _send {
	my ($c, $status, $headers, $body, $framing) = @_;
	$framing //= 'length';
	my $r = "HTTP/1.1 $status " . ($status == 200 ? 'OK' : 'Status') . "\r\n";
	for my $n (sort keys %$headers) {
		$r .= "$n: $headers->{$n}\r\n";
	}
	if ($framing eq 'chunked' || $framing eq 'chunked_cut') {
		$r .= "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
		for (my $i = 0; $i < length $body; $i += 100) {
			my $chunk = substr($body, $i, 100);
			$r .= sprintf("%x\r\n%s\r\n", length $chunk, $chunk);
		}
		# chunked_cut: the connection closes without the last chunk
		$r .= "0\r\n\r\n" if $framing eq 'chunked';
	} elsif ($framing eq 'close') {
		$r .= "Connection: close\r\n\r\n$body";
	} else {
		$r .= "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
	}
	my $off = 0;
	while ($off < length $r) {
		my $n = syswrite($c, $r, length($r) - $off, $off);
		last unless defined $n;
		$off += $n;
	}
}

sub _json_error {
	my ($c, $status, $error, $desc) = @_;
	_send($c, $status, { 'Content-Type' => 'application/json' },
		$JSON->encode({ error => $error, error_description => $desc }));
}

sub _handle {
	my ($dir, $c) = @_;
	my $req = _read_request($c) or return;
	_log_request($dir, $req);

	my $spec;
	if (open(my $fh, '<:raw', _resp_file($dir, $req->{path}))) {
		local $/;
		$spec = $JSON->decode(<$fh>);
		close $fh;
	}

	if (!$spec && $req->{path} =~ m{^(.*)/authorize$}) {
		return _authorize($dir, $c, $req, $1);
	}
	if (!$spec) {
		return _send($c, 404, { 'Content-Type' => 'application/json' },
			'{"error":"not_found"}');
	}

	sleep($spec->{delay}) if $spec->{delay};
	return if $spec->{close};

	if ($spec->{check}) {
		return unless _check_token_request($dir, $c, $req, $spec);
	}

	_send($c, $spec->{status}, $spec->{headers}, $spec->{body}, $spec->{framing});
}

sub _authorize {
	my ($dir, $c, $req, $prefix) = @_;
	my $q = form_decode($req->{query});
	for my $p (qw/ response_type client_id redirect_uri state nonce code_challenge /) {
		return _json_error($c, 400, 'invalid_request', "no $p")
			unless defined $q->{$p} && length $q->{$p};
	}
	return _json_error($c, 400, 'unsupported_response_type', $q->{response_type})
		unless $q->{response_type} eq 'code';
	return _json_error($c, 400, 'invalid_request', 'PKCE S256 required')
		unless ($q->{code_challenge_method} // '') eq 'S256';

	open(my $rfh, '<:raw', '/dev/urandom') or die "urandom: $!";
	read($rfh, my $rand, 18);
	close $rfh;
	my $code = encode_base64url($rand);

	open(my $fh, '>>:raw', "$dir/codes") or die "codes: $!";
	flock($fh, LOCK_EX);
	print $fh $JSON->encode({
		code => $code,
		client_id => $q->{client_id},
		redirect_uri => $q->{redirect_uri},
		code_challenge => $q->{code_challenge},
		nonce => $q->{nonce},
	}) . "\n";
	close $fh;

	my $loc = $q->{redirect_uri} . ($q->{redirect_uri} =~ /\?/ ? '&' : '?')
		. 'code=' . _urlencode($code) . '&state=' . _urlencode($q->{state});
	if (open(my $ifh, '<', "$dir/iss-" . unpack('H*', $prefix))) {
		my $iss = <$ifh>;
		close $ifh;
		$loc .= '&iss=' . _urlencode($iss);
	}
	_send($c, 302, { Location => $loc, 'Content-Type' => 'text/plain' }, '');
}

# Returns 1 if the exchange is valid (then the configured answer is sent), otherwise answers
# with an OAuth error and returns 0.
sub _check_token_request {
	my ($dir, $c, $req, $spec) = @_;
	my $f = form_decode($req->{body});

	if (my $client = $spec->{client}) {
		my ($id, $secret, $method) = @$client;
		my ($got_id, $got_secret);
		if (($req->{headers}{authorization} // '') =~ /^Basic (\S+)$/) {
			my ($u, $p) = split /:/, decode_base64($1), 2;
			($got_id, $got_secret) = (_urldecode($u // ''), _urldecode($p // ''));
			$got_id = undef if $method ne 'client_secret_basic';
		} elsif (defined $f->{client_secret}) {
			($got_id, $got_secret) = ($f->{client_id}, $f->{client_secret});
			$got_id = undef if $method ne 'client_secret_post';
		}
		unless (defined $got_id && $got_id eq $id && $got_secret eq $secret) {
			_json_error($c, 401, 'invalid_client', 'client authentication failed');
			return 0;
		}
	}

	return _bad_grant($c, 'unsupported grant_type')
		unless ($f->{grant_type} // '') eq 'authorization_code';

	my $code = $f->{code} // '';
	open(my $lock, '>>', "$dir/codes.lock") or die "codes.lock: $!";
	flock($lock, LOCK_EX);

	my $issued;
	if (open(my $fh, '<:raw', "$dir/codes")) {
		while (my $line = <$fh>) {
			my $e = $JSON->decode($line);
			$issued = $e if $e->{code} eq $code;
		}
		close $fh;
	}
	return _bad_grant($c, 'unknown code') unless $issued;

	my %used;
	if (open(my $fh, '<', "$dir/codes.used")) {
		chomp(my @u = <$fh>);
		%used = map { $_ => 1 } @u;
		close $fh;
	}
	return _bad_grant($c, 'code already used') if $used{$code};

	open(my $ufh, '>>', "$dir/codes.used") or die "codes.used: $!";
	print $ufh "$code\n";
	close $ufh;
	close $lock;

	return _bad_grant($c, 'redirect_uri mismatch')
		unless ($f->{redirect_uri} // '') eq $issued->{redirect_uri};
	return _bad_grant($c, 'PKCE verification failed')
		unless encode_base64url(sha256($f->{code_verifier} // '')) eq
			$issued->{code_challenge};
	return 1;
}

sub _bad_grant {
	my ($c, $desc) = @_;
	_json_error($c, 400, 'invalid_grant', $desc);
	return 0;
}

1;
