package GptAuthOidc;

# Helpers for the gpt_auth tests that talk to real peers: the test OpenID provider
# (t/oidc/provider.mjs, npm oidc-provider) and, for the browser test, Chromium.
#
# - require_peers(): the peers must be installed; if they are not, the test file FAILS (one
#   failing test saying what to install), it never skips.
# - start_provider(): writes the provider's JSON configuration, starts it as a Test::Nginx
#   daemon and waits until it is ready.
# - A small user agent over raw HTTP/1.0 (core Perl, Test::Nginx's http()): web(), with a
#   cookie jar (GptAuthOidc::Jar) that keeps cookies per host and path as a browser does, and
#   simple HTML parsing for links and forms.
# - provider_sign_in(): plays the user at the provider: follows its 303s as GETs, fills the login
#   form (or presses Cancel), and stops at the first redirect that leaves the provider (the
#   answer to the relying party's redirect_uri), without following it.
#
# Only core Perl modules (JSON::PP, POSIX, Time::HiRes).

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT = qw/ require_peers node_binary repo_dir start_provider web parse_url resolve_url
	url_params url_decode url_encode html_decode links forms location_of provider_sign_in
	png_info /;

use File::Spec;
use FindBin;
use JSON::PP;
use POSIX qw/ WNOHANG /;
use Time::HiRes qw/ sleep time /;
use Test::More qw//;
use Test::Nginx qw/ http port /;
use GptAuth qw/ read_reply /;

# The repository: the parent of the directory holding the test files.
sub repo_dir {
	return File::Spec->rel2abs("$FindBin::Bin/..");
}

sub _in_path {
	my ($prog) = @_;
	return $prog if $prog =~ m{/} && -x $prog;
	for my $d (split /:/, $ENV{PATH} // '') {
		return "$d/$prog" if length $d && -x "$d/$prog";
	}
	return undef;
}

# The node binary (TEST_NODE, else node in PATH), or undef.
sub node_binary {
	return _in_path($ENV{TEST_NODE} // 'node');
}

# The Chromium binary (E2E_CHROMIUM, else /usr/bin/chromium), or undef.
sub chromium_binary {
	my $c = $ENV{E2E_CHROMIUM} // '/usr/bin/chromium';
	return -x $c ? $c : undef;
}

# require_peers(chromium => 0|1): returns (node => PATH, chromium => PATH). If a peer is
# missing, the whole file fails with one test naming what is missing and how to install it.
sub require_peers {
	my (%a) = @_;
	my $repo = repo_dir();
	my @missing;
	my %found;

	my $node = node_binary();
	if (!$node) {
		push @missing, 'node (Node.js 20+) is not in PATH';
	} else {
		my $v = `"$node" --version 2>/dev/null` // '';
		if ($v =~ /^v(\d+)\./ && $1 >= 20) {
			$found{node} = $node;
		} else {
			chomp $v;
			push @missing, "node at $node is not Node.js 20+ (\"$v\")";
		}
	}
	push @missing, "t/oidc/node_modules/oidc-provider is missing (npm ci --prefix t/oidc)"
		unless -f "$repo/t/oidc/node_modules/oidc-provider/package.json";

	if ($a{chromium}) {
		push @missing, "t/oidc/node_modules/playwright-core is missing (npm ci --prefix t/oidc)"
			unless -f "$repo/t/oidc/node_modules/playwright-core/package.json";
		my $c = chromium_binary();
		if ($c) {
			$found{chromium} = $c;
		} else {
			push @missing, 'chromium is missing at ' . ($ENV{E2E_CHROMIUM} // '/usr/bin/chromium');
		}
	}

	if (@missing) {
		Test::More::plan(tests => 1);
		Test::More::diag("!!! $0 needs its test peers; install them with\n"
			. "!!!     apt-get install -y nodejs npm chromium && npm ci --prefix t/oidc\n"
			. "!!! (tools/install-deps.sh does this)");
		Test::More::fail("test peers installed: " . join('; ', @missing));
		exit 1;
	}

	return %found;
}

# start_provider($t, port => NOMINAL, config => { clients => [...], users => [...] },
#                [name => 'oidc'])
# Writes NAME.json into the test directory (issuer http://127.0.0.1:<real port> unless the
# config has one), starts t/oidc/provider.mjs as a daemon of $t with its log in NAME.log, and
# waits (up to 30 s) for its "listening" line. Dies with the end of the log if it does not come.
# Returns { issuer => URL, port => REAL PORT, log => PATH }.
sub start_provider {
	my ($t, %a) = @_;
	my $name = $a{name} // 'oidc';
	my $d = $t->testdir();
	my $p = port($a{port} // 8090);
	my %config = %{ $a{config} };
	$config{issuer} //= "http://127.0.0.1:$p";

	$t->write_file("$name.json", JSON::PP->new->canonical->pretty->encode(\%config));
	my $log = "$d/$name.log";

	my $node = node_binary() or die "node not found\n";
	$t->run_daemon($node, repo_dir() . '/t/oidc/provider.mjs',
		'--port', $p, '--config', "$d/$name.json", '--log', $log);
	my $pid = $t->{_daemons} ? $t->{_daemons}[-1] : undef;

	my $deadline = time() + 30;
	while (1) {
		my $text = -e $log ? $t->read_file("$name.log") : '';
		last if $text =~ /^oidc-provider listening on /m;
		my $gone = defined $pid && waitpid($pid, WNOHANG) == $pid;
		if ($gone || time() > $deadline) {
			die "oidc provider did not start ("
				. ($gone ? 'exited with status ' . ($? >> 8) : 'timeout')
				. "), $log:\n$text\n";
		}
		sleep(0.1);
	}

	return { issuer => $config{issuer}, port => $p, log => $log };
}

###############################################################################
# URLs and HTML.

sub url_decode {
	my ($s) = @_;
	return undef unless defined $s;
	$s =~ tr/+/ /;
	$s =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
	return $s;
}

sub url_encode {
	my ($s) = @_;
	$s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord($1))/ge;
	return $s;
}

sub html_decode {
	my ($s) = @_;
	return undef unless defined $s;
	$s =~ s/&quot;/"/g;
	$s =~ s/&#0*39;|&#x0*27;|&apos;/'/gi;
	$s =~ s/&lt;/</g;
	$s =~ s/&gt;/>/g;
	$s =~ s/&#(\d+);/chr($1)/ge;
	$s =~ s/&#x([0-9a-f]+);/chr(hex($1))/gie;
	$s =~ s/&amp;/&/g;
	return $s;
}

# parse_url('http://host:port/path?query') -> { scheme, host, port, hostport, path, query,
# origin, target (path?query) }, or undef.
sub parse_url {
	my ($url) = @_;
	return undef unless defined $url
		&& $url =~ m{^(https?)://([^/?#:]+)(?::(\d+))?([^?#]*)(?:\?([^#]*))?}i;
	my ($scheme, $host, $port, $path, $query) = (lc $1, lc $2, $3, $4, $5);
	$port //= $scheme eq 'https' ? 443 : 80;
	$path = '/' if $path eq '';
	my $default = ($scheme eq 'https' && $port == 443) || ($scheme eq 'http' && $port == 80);
	my $hostport = $default ? $host : "$host:$port";
	return {
		scheme => $scheme, host => $host, port => $port, hostport => $hostport,
		path => $path, query => $query,
		origin => "$scheme://$hostport",
		target => $path . (defined $query ? "?$query" : ''),
	};
}

# An absolute URL for $ref (absolute, //host, /path, ?query or relative) seen at $base.
sub resolve_url {
	my ($base, $ref) = @_;
	return $ref if $ref =~ m{^[a-z][a-z0-9+.-]*:}i;
	my $b = parse_url($base) or return undef;
	return "$b->{scheme}:$ref" if $ref =~ m{^//};
	return "$b->{origin}$ref" if $ref =~ m{^/};
	return "$b->{origin}$b->{path}$ref" if $ref =~ m{^\?};
	(my $dir = $b->{path}) =~ s{[^/]*$}{};
	return "$b->{origin}$dir$ref";
}

# Query parameters of a URL (or a bare query string) as a hash (last value wins).
sub url_params {
	my ($url) = @_;
	my $q = $url =~ /\?([^#]*)/ ? $1 : ($url =~ m{^[a-z]+://}i ? '' : $url);
	my %p;
	for my $pair (split /&/, $q) {
		next if $pair eq '';
		my ($k, $v) = split /=/, $pair, 2;
		$p{url_decode($k)} = url_decode($v // '');
	}
	return \%p;
}

sub _attrs {
	my ($tag) = @_;
	my %a;
	while ($tag =~ /([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?/g) {
		$a{lc $1} = html_decode($2 // $3 // $4 // '');
	}
	return \%a;
}

# <a> elements: list of { href, text, class }, entities decoded, text without tags.
sub links {
	my ($html) = @_;
	my @l;
	while ($html =~ m{<a\b([^>]*)>(.*?)</a>}gis) {
		my ($attrs, $text) = (_attrs($1), $2);
		$text =~ s/<[^>]*>//g;
		push @l, { %$attrs, text => html_decode($text) };
	}
	return @l;
}

# <form> elements: list of { action, method, id, inputs => { name => value },
# buttons => [ text ] }.
sub forms {
	my ($html) = @_;
	my @f;
	while ($html =~ m{<form\b([^>]*)>(.*?)</form>}gis) {
		my ($attrs, $inner) = (_attrs($1), $2);
		my %inputs;
		while ($inner =~ m{<input\b([^>]*)>}gis) {
			my $i = _attrs($1);
			$inputs{$i->{name}} = $i->{value} // '' if defined $i->{name};
		}
		my @buttons;
		while ($inner =~ m{<button\b[^>]*>(.*?)</button>}gis) {
			push @buttons, html_decode($1);
		}
		push @f, { %$attrs, method => lc($attrs->{method} // 'get'), inputs => \%inputs,
			buttons => \@buttons };
	}
	return @f;
}

###############################################################################
# The user agent.

# web($method, $url, [jar => $jar], [accept => ...], [headers => [...]], [form => [k, v, ...]],
#     [cookie => 'extra=1'], [timeout => seconds (default 15)])
# One HTTP/1.0 request to 127.0.0.1:<port of $url> with Host from $url. Cookies from the jar
# are sent and Set-Cookie headers stored into it. Returns the raw response ('' on failure).
sub web {
	my ($method, $url, %a) = @_;
	my $u = parse_url($url) or die "web(): not an http URL: $url\n";
	die "web(): https is not supported here: $url\n" if $u->{scheme} ne 'http';

	my $r = "$method $u->{target} HTTP/1.0\r\nHost: $u->{hostport}\r\nConnection: close\r\n"
		. "User-Agent: gpt_auth-test/1.0\r\n";
	$r .= "Accept: $a{accept}\r\n" if defined $a{accept};
	my @cookies;
	push @cookies, $a{jar}->header_for($url) if $a{jar};
	push @cookies, $a{cookie} if defined $a{cookie};
	@cookies = grep { defined && length } @cookies;
	$r .= 'Cookie: ' . join('; ', @cookies) . "\r\n" if @cookies;
	$r .= "$_\r\n" for @{ $a{headers} // [] };
	my $body;
	if ($a{form}) {
		my @kv = @{ $a{form} };
		my @pairs;
		while (my ($k, $v) = splice(@kv, 0, 2)) {
			push @pairs, url_encode($k) . '=' . url_encode($v);
		}
		$body = join('&', @pairs);
		$r .= "Content-Type: application/x-www-form-urlencoded\r\n";
	}
	$body = $a{body} if defined $a{body};
	$r .= 'Content-Length: ' . length($body) . "\r\n" if defined $body;
	$r .= "\r\n";
	$r .= $body if defined $body;

	my $s = http($r, PeerAddr => "127.0.0.1:$u->{port}", start => 1);
	my $res = $s ? read_reply($s, $a{timeout} // 15) // '' : '';
	$a{jar}->store($url, $res) if $a{jar};
	return $res;
}

# The Location of a response, absolute (resolved against $url), or undef.
sub location_of {
	my ($res, $url) = @_;
	my ($head) = split(/\r\n\r\n/, $res, 2);
	return undef unless defined $head && $head =~ /^Location:[ \t]*(.*?)\r?$/mi;
	return resolve_url($url, $1);
}

sub _status {
	my ($r) = @_;
	return defined $r && $r =~ m{^HTTP/\d\.\d (\d{3})} ? $1 : 0;
}

sub _body {
	my ($r) = @_;
	my (undef, $b) = split(/\r\n\r\n/, $r // '', 2);
	return $b // '';
}

# provider_sign_in($jar, $authorization_url, email => E, password => P, [cancel => 1])
# Plays the user at the provider, starting with the relying party's redirect to its
# authorization endpoint. Returns { url => where the provider sends the browser (not followed),
# form_seen => 0|1, trail => [ "STATUS METHOD URL", ... ], last => the last response }.
# url is undef if the provider never sent the browser away (the trail says why).
sub provider_sign_in {
	my ($jar, $url, %a) = @_;
	my $origin = parse_url($url)->{origin};
	my %out = (trail => [], form_seen => 0);
	my ($method, @form) = ('GET');

	for (1 .. 12) {
		my $res = web($method, $url, jar => $jar, accept => 'text/html',
			($method eq 'POST' ? (form => [@form]) : ()));
		my $status = _status($res);
		push @{ $out{trail} }, "$status $method $url";
		$out{last} = $res;

		if ($status =~ /^30[1237]$/) {
			my $next = location_of($res, $url);
			if (!defined $next) {
				push @{ $out{trail} }, 'redirect without Location';
				return \%out;
			}
			if (parse_url($next) && parse_url($next)->{origin} ne $origin) {
				$out{url} = $next;
				return \%out;
			}
			($method, $url, @form) = ('GET', $next);
			next;
		}

		my $html = _body($res);
		my ($login) = grep { exists $_->{inputs}{password} } forms($html);
		if ($status == 200 && $login && !$out{submitted}++) {
			$out{form_seen} = 1;
			my $form = $login;
			if ($a{cancel}) {
				($form) = grep { ($_->{id} // '') eq 'abort'
					|| grep { /cancel/i } @{ $_->{buttons} } } forms($html);
				die "provider page has no Cancel form\n" unless $form;
				@form = ();
			} else {
				@form = (email => $a{email}, password => $a{password});
			}
			($method, $url) = (uc($form->{method}), resolve_url($url, $form->{action}));
			next;
		}

		my $text = $html;
		$text =~ s/<[^>]*>/ /g;
		$text =~ s/\s+/ /g;
		push @{ $out{trail} }, 'stopped: ' . substr($text, 0, 300);
		return \%out;
	}

	push @{ $out{trail} }, 'too many steps';
	return \%out;
}

###############################################################################
# Files.

# png_info($path) -> { width, height, size } for a PNG file, or undef if it is not one.
sub png_info {
	my ($path) = @_;
	open(my $fh, '<:raw', $path) or return undef;
	my $n = read($fh, my $head, 24);
	my $size = -s $fh;
	close $fh;
	return undef unless $n && $n == 24 && substr($head, 0, 8) eq "\x89PNG\r\n\x1a\n"
		&& substr($head, 12, 4) eq 'IHDR';
	my ($w, $h) = unpack('NN', substr($head, 16, 8));
	return { width => $w, height => $h, size => $size };
}

###############################################################################
package GptAuthOidc::Jar;

# A cookie jar for the raw-HTTP user agent: RFC 6265 storage and matching (host-only or
# Domain cookies, path scoping, Max-Age/Expires, Secure), ports ignored as browsers do.

use Time::Local qw/ timegm /;

my %MON = (jan => 0, feb => 1, mar => 2, apr => 3, may => 4, jun => 5, jul => 6, aug => 7,
	sep => 8, oct => 9, nov => 10, dec => 11);

sub new {
	my ($class) = @_;
	return bless { cookies => [], seen => [] }, $class;
}

sub _expires {
	my ($v) = @_;
	return undef unless $v =~ /(\d{1,2})[ -]([a-z]{3})[a-z]*[ -](\d{2,4}) (\d{1,2}):(\d{2}):(\d{2})/i;
	my ($d, $m, $y, $H, $M, $S) = ($1, $MON{lc $2}, $3, $4, $5, $6);
	return undef unless defined $m;
	$y += $y < 70 ? 2000 : 1900 if $y < 100;
	return eval { timegm($S, $M, $H, $d, $m, $y) };
}

# Stores the Set-Cookie headers of $res, received for $url.
sub store {
	my ($self, $url, $res) = @_;
	my $u = GptAuthOidc::parse_url($url) or return;
	my ($head) = split(/\r\n\r\n/, $res // '', 2);
	return unless defined $head;

	for my $line ($head =~ /^Set-Cookie:[ \t]*(.*?)\r?$/mgi) {
		push @{ $self->{seen} }, { url => $url, header => $line };
		my ($pair, @attrs) = split /;\s*/, $line;
		next unless defined $pair && $pair =~ /=/;
		my ($name, $value) = split /=/, $pair, 2;
		$name =~ s/^\s+|\s+$//g;
		my %c = (name => $name, value => $value, host => $u->{host}, host_only => 1,
			path => undef, secure => 0, httponly => 0, expires => undef);
		my $max_age;
		for my $attr (@attrs) {
			my ($k, $v) = split /=/, $attr, 2;
			$k = lc $k;
			$k =~ s/^\s+|\s+$//g;
			$v //= '';
			if ($k eq 'path' && $v =~ m{^/}) {
				$c{path} = $v;
			} elsif ($k eq 'domain' && $v ne '') {
				(my $dom = lc $v) =~ s/^\.//;
				# a Domain the host is not under: the cookie is rejected
				next unless $u->{host} eq $dom || $u->{host} =~ /\.\Q$dom\E$/;
				@c{qw/ host host_only /} = ($dom, 0);
			} elsif ($k eq 'max-age' && $v =~ /^-?\d+$/) {
				$max_age = $v;
			} elsif ($k eq 'expires') {
				$c{expires} = _expires($v);
			} elsif ($k eq 'secure') {
				$c{secure} = 1;
			} elsif ($k eq 'httponly') {
				$c{httponly} = 1;
			} elsif ($k eq 'samesite') {
				$c{samesite} = $v;
			}
		}
		$c{expires} = time() + $max_age if defined $max_age;
		if (!defined $c{path}) {
			# default-path: the request path up to its last '/'
			($c{path} = $u->{path}) =~ s{/[^/]*$}{};
			$c{path} = '/' if $c{path} eq '';
		}
		next if $c{secure} && $u->{scheme} ne 'https';

		@{ $self->{cookies} } = grep {
			!($_->{name} eq $c{name} && $_->{host} eq $c{host} && $_->{path} eq $c{path}
				&& $_->{host_only} == $c{host_only})
		} @{ $self->{cookies} };
		next if defined $c{expires} && $c{expires} <= time();
		push @{ $self->{cookies} }, \%c;
	}
}

sub _path_match {
	my ($req, $cookie) = @_;
	return 1 if $req eq $cookie;
	return 0 unless index($req, $cookie) == 0;
	return 1 if $cookie =~ m{/$};
	return substr($req, length $cookie, 1) eq '/';
}

# Cookies the jar sends to $url, as a list of hashes (longest path first).
sub matching {
	my ($self, $url) = @_;
	my $u = GptAuthOidc::parse_url($url) or return ();
	my $now = time();
	return sort { length($b->{path}) <=> length($a->{path}) } grep {
		(!defined $_->{expires} || $_->{expires} > $now)
		&& ($_->{host_only} ? $u->{host} eq $_->{host}
			: ($u->{host} eq $_->{host} || $u->{host} =~ /\.\Q$_->{host}\E$/))
		&& _path_match($u->{path}, $_->{path})
		&& (!$_->{secure} || $u->{scheme} eq 'https')
	} @{ $self->{cookies} };
}

# The Cookie header value for $url, or undef.
sub header_for {
	my ($self, $url) = @_;
	my @c = $self->matching($url);
	return undef unless @c;
	return join('; ', map { "$_->{name}=$_->{value}" } @c);
}

# The stored cookies named $name (optionally only those $url would get).
sub get {
	my ($self, $name, $url) = @_;
	my @c = defined $url ? $self->matching($url) : @{ $self->{cookies} };
	return grep { $_->{name} eq $name } @c;
}

# Every Set-Cookie header received: list of { url, header }.
sub seen {
	my ($self) = @_;
	return @{ $self->{seen} };
}

# Drops every cookie whose name matches $re.
sub forget {
	my ($self, $re) = @_;
	@{ $self->{cookies} } = grep { $_->{name} !~ $re } @{ $self->{cookies} };
}

1;
