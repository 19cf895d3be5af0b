package LoginFlow;

# Browser steps of a gpt_auth login, for the Test::Nginx suite: start a login at nginx, let the
# fake provider (FakeIdP) authorize it, come back to the callback with the state cookie.

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT = qw/ start_login authorize_at_idp callback ok_claims /;

use Digest::SHA qw/ sha256 /;
use MIME::Base64 qw/ encode_base64url /;
use JSON::PP ();
use Test::Nginx qw/ http /;

use GptAuth;

# start_login($key, provider => NAME, [rd => URL], [host => 'auth.example.test'],
#             [path => '/login'], [switch => 1], [cookie => 'a=b'],
#             [issuer => URL, client_id => ID] (kept for ok_claims)
# GET <path>?provider=NAME&rd=URL. Returns a hash:
#   r, status, location, auth (query_params of the Location), sid, cookie_name, cookie_value,
#   set_cookie (the raw Set-Cookie header), state (the decoded, verified state cookie or undef),
#   host
sub start_login {
	my ($key, %a) = @_;
	my $path = $a{path} // '/login';
	my $host = $a{host} // 'auth.example.test';
	my $uri = "$path?provider=" . urlencode($a{provider});
	$uri .= '&rd=' . urlencode($a{rd}) if defined $a{rd};
	$uri .= '&switch=1' if $a{switch};
	my $r = request($uri, host => $host, cookie => $a{cookie});
	my %l = (r => $r, status => status($r), location => header($r, 'Location'), host => $host,
		key => $key, provider => $a{provider}, issuer => $a{issuer},
		client_id => $a{client_id});
	$l{auth} = query_params($l{location} // '');
	my @sc = headers($r, 'Set-Cookie');
	$l{set_cookies} = \@sc;
	if (@sc == 1 && $sc[0] =~ /^((\w+)_state_([A-Za-z0-9_-]+))=([^;]*)/) {
		@l{qw/ cookie_name sid cookie_value /} = ($1, $3, $4);
		$l{set_cookie} = $sc[0];
		$l{state} = state_decode($key, $l{cookie_name}, $l{cookie_value}, time());
	}
	return \%l;
}

# authorize_at_idp($login, [peer port nominal number]) -> query params of the fake provider's
# redirect back (code, state, iss), or undef. The authorization URL must point at the
# provider.
sub authorize_at_idp {
	my ($l) = @_;
	my ($hostport, $target) = ($l->{location} // '') =~ m{^http://(127\.0\.0\.1:\d+)(/.*)$}
		or return undef;
	my $r = http("GET $target HTTP/1.0\r\nHost: $hostport\r\n\r\n", PeerAddr => $hostport)
		// '';
	return undef unless status($r) == 302;
	my $loc = header($r, 'Location');
	my $p = query_params($loc);
	$p->{location} = $loc;
	return $p;
}

# callback($login, [code => 'c'], [state => sid], [iss => url], [query => 'raw query'],
#          [cookie => 'override'], [no_cookie => 1], [path => '/callback'], [host => ...],
#          [timeout => s])
# GET the callback as the browser that started $login would (its state cookie attached).
sub callback {
	my ($l, %a) = @_;
	my $path = $a{path} // '/callback';
	my $q = $a{query};
	unless (defined $q) {
		my @p;
		push @p, 'code=' . urlencode($a{code}) if defined $a{code};
		push @p, 'state=' . urlencode($a{state} // $l->{sid});
		push @p, 'iss=' . urlencode($a{iss}) if defined $a{iss};
		$q = join('&', @p);
	}
	my $cookie = $a{cookie};
	$cookie //= "$l->{cookie_name}=$l->{cookie_value}" unless $a{no_cookie};
	return request("$path?$q", host => $a{host} // $l->{host}, cookie => $cookie,
		timeout => $a{timeout});
}

# Claims of a valid ID token for $login: %over replaces claims (undef removes one).
sub ok_claims {
	my ($l, %over) = @_;
	my $now = time();
	my %c = (
		iss => $l->{issuer},
		sub => 'u-' . int(rand(1e9)),
		aud => $l->{client_id},
		iat => $now,
		exp => $now + 3600,
		email => 'alice@example.test',
		email_verified => JSON::PP::true,
	);
	$c{nonce} = $l->{state}{nonce} if $l->{state};
	for my $k (keys %over) {
		if (defined $over{$k}) { $c{$k} = $over{$k} } else { delete $c{$k} }
	}
	return \%c;
}

1;
