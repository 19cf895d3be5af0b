package GptAuth;

# Helpers for the gpt_auth Test::Nginx suite.
#
# The session cookie is minted here from docs/cookie-format.md alone, with core Digest::SHA and
# MIME::Base64: an independent implementation that checks the Rust codec.

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT = qw/ new_key_bytes key_line key_id mint_cookie request status header
	headers body conf_test set_cookies /;

use Digest::SHA qw/ sha256 hmac_sha256 /;
use MIME::Base64 qw/ encode_base64 encode_base64url /;
use Test::Nginx qw/ http port /;

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
	my $body = join('.', $version, $kid, $iat, $exp, encode_base64url($a{email}));
	my $mac = hmac_sha256("$name=$body", $a{key});
	return $body . '.' . encode_base64url($mac);
}

# request($uri, cookie => 'a=b', accept => 'text/html', method => 'GET',
#         headers => ["X-A: 1", ...], host => 'localhost', body => '...', port => 8080)
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
	return http($r, %opts) // '';
}

sub status {
	my ($r) = @_;
	return $r =~ m{^HTTP/\d\.\d (\d{3})} ? $1 : 0;
}

# First value of a response header (case-insensitive name), or undef.
sub header {
	my ($r, $name) = @_;
	my ($head) = split(/\r\n\r\n/, $r, 2);
	return $1 if $head =~ /^\Q$name\E:[ \t]*(.*?)\r?$/mi;
	return undef;
}

# All values of a response header.
sub headers {
	my ($r, $name) = @_;
	my ($head) = split(/\r\n\r\n/, $r, 2);
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

# conf_test($t, $name, $conf): writes $conf (expanded) and runs `nginx -t` on it; returns
# ($exit_ok, $output) where $output is what nginx printed (emerg/warn lines).
sub conf_test {
	my ($t, $name, $conf) = @_;
	$t->write_file_expand($name, $conf);
	my $d = $t->testdir();
	my $bin = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
	my $out = `$bin -t -p $d/ -c $d/$name -e $d/$name.err 2>&1`;
	my $ok = $? == 0;
	return ($ok, $out);
}

1;
