package IdToken;

# ID tokens (JWS compact serialization) for the gpt_auth Test::Nginx suite, signed through the
# `openssl` command: RS256 (RSASSA-PKCS1-v1_5 with SHA-256) and ES256 (ECDSA P-256 with
# SHA-256, the DER signature openssl produces converted to the raw r||s JOSE wants), plus
# hand-built tokens that a verifier must refuse: "alg": "none", and HS256 keyed with the RSA
# public key (the classic key-confusion attack).
#
# Keys are generated per test run into the test directory; their JWK members (n, e; x, y) are
# extracted with openssl too, so nothing here depends on a CPAN module.
#
#     my $rsa = new_rsa_key($t->testdir(), 'k-rsa');
#     my $ec = new_ec_key($t->testdir(), 'k-ec');
#     my $jwks = jwks_json($rsa, $ec);
#     my $token = sign_jwt($rsa, { iss => ..., aud => ..., ... });
#     my $es = sign_jwt($ec, \%claims, header => { kid => 'other' });

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT = qw/ new_rsa_key new_ec_key jwk jwks_json sign_jwt unsigned_jwt hs256_jwt
	b64u_json jwt_parts /;

use Digest::SHA qw/ hmac_sha256 /;
use JSON::PP;
use MIME::Base64 qw/ encode_base64url decode_base64url /;
use POSIX ();

my $JSON = JSON::PP->new->canonical->utf8;
my $SEQ = 0;

# Runs openssl with the arguments; returns its stdout (binary), dies on failure.
sub _openssl {
	my (@args) = @_;
	my $pid = open(my $fh, '-|') // die "fork: $!";
	if ($pid == 0) {
		open STDERR, '>', '/dev/null';
		exec 'openssl', @args or POSIX::_exit(127);
	}
	binmode $fh;
	local $/;
	my $out = <$fh> // '';
	close $fh;
	die "openssl @args: exit status $?\n" if $?;
	return $out;
}

sub _slurp {
	my ($file) = @_;
	open(my $fh, '<:raw', $file) or die "$file: $!";
	local $/;
	my $c = <$fh>;
	close $fh;
	return $c;
}

sub _spew {
	my ($file, $data) = @_;
	open(my $fh, '>:raw', $file) or die "$file: $!";
	print $fh $data;
	close $fh or die "$file: $!";
}

# Minimal big-endian bytes of an unsigned integer.
sub _int_bytes {
	my ($n) = @_;
	my $b = '';
	while ($n > 0) {
		$b = chr($n & 0xff) . $b;
		$n >>= 8;
	}
	return $b eq '' ? "\0" : $b;
}

# new_rsa_key($dir, $kid, bits => 2048): { type => 'RSA', alg => 'RS256', kid, pem (private
# key file), public_pem (text), n, e (base64url) }
sub new_rsa_key {
	my ($dir, $kid, %a) = @_;
	my $bits = $a{bits} // 2048;
	my $file = "$dir/jwk-" . $SEQ++ . '-rsa.pem';
	_openssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', "rsa_keygen_bits:$bits",
		'-out', $file);
	my ($mod) = _openssl('rsa', '-in', $file, '-noout', '-modulus') =~ /^Modulus=([0-9A-F]+)\s*$/
		or die "no modulus in $file\n";
	my ($exp) = _openssl('rsa', '-in', $file, '-noout', '-text') =~ /publicExponent: (\d+)/
		or die "no public exponent in $file\n";
	return {
		type => 'RSA',
		alg => 'RS256',
		kid => $kid,
		pem => $file,
		public_pem => _openssl('pkey', '-in', $file, '-pubout'),
		n => encode_base64url(pack('H*', $mod)),
		e => encode_base64url(_int_bytes($exp)),
	};
}

# new_ec_key($dir, $kid): { type => 'EC', alg => 'ES256', kid, pem, public_pem, x, y }
sub new_ec_key {
	my ($dir, $kid) = @_;
	my $file = "$dir/jwk-" . $SEQ++ . '-ec.pem';
	_openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256',
		'-out', $file);
	# SubjectPublicKeyInfo of a P-256 key ends with the uncompressed point 04 || x || y
	my $der = _openssl('pkey', '-in', $file, '-pubout', '-outform', 'DER');
	my $point = substr($der, -65);
	die "unexpected EC public key encoding in $file\n" unless substr($point, 0, 1) eq "\x04";
	return {
		type => 'EC',
		alg => 'ES256',
		kid => $kid,
		pem => $file,
		public_pem => _openssl('pkey', '-in', $file, '-pubout'),
		x => encode_base64url(substr($point, 1, 32)),
		y => encode_base64url(substr($point, 33, 32)),
	};
}

# The public JWK of a key as a hash; %over replaces members (undef removes one).
sub jwk {
	my ($key, %over) = @_;
	my %j = $key->{type} eq 'RSA'
		? (kty => 'RSA', n => $key->{n}, e => $key->{e})
		: (kty => 'EC', crv => 'P-256', x => $key->{x}, y => $key->{y});
	$j{kid} = $key->{kid} if defined $key->{kid};
	$j{use} = 'sig';
	$j{alg} = $key->{alg};
	for my $k (keys %over) {
		if (defined $over{$k}) { $j{$k} = $over{$k} } else { delete $j{$k} }
	}
	return \%j;
}

# A JWKS document of keys (key objects from new_*_key, or JWK hashes).
sub jwks_json {
	my (@keys) = @_;
	return $JSON->encode({
		keys => [ map { $_->{type} ? jwk($_) : $_ } @keys ],
	});
}

sub b64u_json {
	my ($data) = @_;
	return encode_base64url($JSON->encode($data));
}

# ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) to the 64-byte r || s of JWS.
sub _der_to_raw {
	my ($der) = @_;
	my @b = unpack('C*', $der);
	my $i = 0;
	die "not a DER sequence\n" unless $b[$i++] == 0x30;
	my $len = $b[$i++];
	$i += ($len & 0x7f) if $len & 0x80;
	my $raw = '';
	for (1 .. 2) {
		die "not a DER integer\n" unless $b[$i++] == 0x02;
		my $l = $b[$i++];
		my $int = pack('C*', @b[$i .. $i + $l - 1]);
		$i += $l;
		$int =~ s/^\x00+//;
		die "integer longer than 32 bytes\n" if length($int) > 32;
		$raw .= ("\x00" x (32 - length $int)) . $int;
	}
	return $raw;
}

# sign_jwt($key, \%claims, header => { ... } (merged over alg/typ/kid; undef removes),
#          payload => 'raw JSON text instead of claims')
sub sign_jwt {
	my ($key, $claims, %a) = @_;
	my %h = (alg => $key->{alg}, typ => 'JWT');
	$h{kid} = $key->{kid} if defined $key->{kid};
	my $over = $a{header} // {};
	for my $k (keys %$over) {
		if (defined $over->{$k}) { $h{$k} = $over->{$k} } else { delete $h{$k} }
	}
	my $payload = defined $a{payload} ? encode_base64url($a{payload}) : b64u_json($claims);
	my $input = b64u_json(\%h) . '.' . $payload;

	my $in = "$key->{pem}.in";
	_spew($in, $input);
	my $sig = _openssl('dgst', '-sha256', '-sign', $key->{pem}, '-binary', $in);
	unlink $in;
	$sig = _der_to_raw($sig) if $key->{type} eq 'EC';
	return $input . '.' . encode_base64url($sig);
}

# "alg": "none" (or any header), no signature: header.payload.
sub unsigned_jwt {
	my ($header, $claims) = @_;
	return b64u_json($header) . '.' . b64u_json($claims) . '.';
}

# HS256 with $secret as the HMAC key (e.g. an RSA public key in PEM form).
sub hs256_jwt {
	my ($secret, $header, $claims) = @_;
	my $input = b64u_json({ alg => 'HS256', typ => 'JWT', %$header }) . '.' . b64u_json($claims);
	return $input . '.' . encode_base64url(hmac_sha256($input, $secret));
}

# (header hash, claims hash, signature bytes) of a token, for checks.
sub jwt_parts {
	my ($token) = @_;
	my ($h, $p, $s) = split /\./, $token, 3;
	return ($JSON->decode(decode_base64url($h)), $JSON->decode(decode_base64url($p)),
		decode_base64url($s // ''));
}

1;
