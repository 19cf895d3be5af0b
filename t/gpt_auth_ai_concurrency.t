#!/usr/bin/perl

# gpt_auth: exact accounting of AI usage under concurrency. Two workers, one user, many
# parallel streamed requests: what the zone charged equals the sum of the usage the provider
# reported, to the token. With a token budget, admission reserves each request's estimate (its
# input estimated from the body, its output limit max_tokens): the documented bound holds, what
# is charged beyond the budget is less than one request's estimate.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;
use GptAuthQuota qw/ cookie_for quota_json /;
use GptAuthAI;
use IO::Socket::INET;
use POSIX qw/ _exit /;
use Time::HiRes qw/ sleep /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/);

my $CAP = 1000;		# day_tokens of /cap/

(my $conf = <<'EOF') =~ s/%%CAP%%/$CAP/;

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    access_log off;
    gpt_auth_key_file %%TESTDIR%%/keys;
    gpt_auth_quota_zone zone=free:1m;
    gpt_auth_quota_zone zone=cap:1m;

    server {
        listen       127.0.0.1:8080 reuseport;
        server_name  localhost;

        gpt_auth_api openai;
        gpt_auth_meter on;
        proxy_http_version 1.1;
        proxy_buffering off;

        location /free/ {
            gpt_auth on;
            gpt_auth_quota zone=free;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /cap/ {
            gpt_auth on;
            gpt_auth_quota zone=cap day_tokens=%%CAP%%;
            proxy_pass http://127.0.0.1:8081/;
        }

        location = /report-free { gpt_auth on; gpt_auth_quota_report zone=free; }
        location = /report-cap  { gpt_auth on; gpt_auth_quota_report zone=cap; }
    }
}

EOF
$t->write_file_expand('nginx.conf', $conf);

my $key = new_key_bytes();
$t->write_file('keys', key_line($key) . "\n");
chmod 0600, $t->testdir() . '/keys';

my $mock = start_mock($t, port(8081));
$t->run()->plan(7);

###############################################################################

my $cookie = cookie_for($key, 'alice@example.com');
my $port = port(8080);

# A streamed chat request; returns the status (0 if none).
my sub stream {
	my ($prefix, $events, $max) = @_;
	my $body = '{"model":"gpt-4o-mini","stream":true,"max_tokens":' . $max
		. ',"messages":[{"role":"user","content":"Hello"}]}';
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 20) or return 0;
	print $s "POST /$prefix/v1/chat/completions HTTP/1.0\r\nHost: localhost\r\n"
		. "Cookie: $cookie\r\nContent-Type: application/json\r\n"
		. "X-Mock-Events: $events\r\nX-Mock-Delay-Ms: 4\r\n"
		. 'Content-Length: ' . length($body) . "\r\n\r\n$body";
	local $/;
	my $r = <$s> // '';
	return $r =~ m{^HTTP/1\.\d (\d+)} ? $1 : 0;
}

# Runs the requests in parallel (one process each); returns their statuses.
my sub parallel {
	my (@reqs) = @_;
	my %kids;
	for my $i (0 .. $#reqs) {
		my $pid = fork() // die "fork: $!";
		if ($pid == 0) {
			my $st = stream(@{ $reqs[$i] });
			if (open(my $fh, '>', $t->testdir() . "/st.$i")) {
				print $fh $st;
				close $fh;
			}
			_exit(0);
		}
		$kids{$pid} = 1;
	}
	waitpid($_, 0) for keys %kids;
	return map { $t->read_file("st.$_") } 0 .. $#reqs;
}

my sub reported {
	my $in = 0;
	my $out = 0;
	for (grep { $_->{usage} } @{ mock_log($mock) }) {
		$in += $_->{usage}{prompt_tokens};
		$out += $_->{usage}{completion_tokens};
	}
	return ($in, $out);
}

my sub charged {
	my ($zone) = @_;
	my $j = quota_json(body(request("/report-$zone?format=json", cookie => $cookie))) // {};
	my $u = (($j->{users} // [])->[0] // {})->{usage}{day} // {};
	return ($u->{requests} // 0, $u->{input_tokens} // 0, $u->{output_tokens} // 0);
}

# A settled request is charged in the log phase, a moment after its last byte.
my sub settled {
	my ($zone, $n) = @_;
	for (1 .. 50) {
		my @c = charged($zone);
		return @c if $c[0] >= $n;
		sleep(0.1);
	}
	return charged($zone);
}

# exact accounting: 40 parallel streams of 5 to 44 events each

my @st = parallel(map { ['free', 5 + $_, 100] } 0 .. 39);
is(join(' ', grep { $_ ne '200' } @st), '', '40 parallel streams by one user over 2 workers');
my ($in, $out) = reported();
my @c = settled('free', 40);
is_deeply(\@c, [ 40, $in, $out ], "charged exactly what the provider reported ($in in, $out out)");
is($out, (5 + 44) * 20, 'which is every event of every stream');

# the overshoot bound: each request reserves its estimate, 52 tokens each are used

mock_reset($mock);
my $body_len = length('{"model":"gpt-4o-mini","stream":true,"max_tokens":60,'
	. '"messages":[{"role":"user","content":"Hello"}]}');
my $estimate = int(($body_len + 3) / 4) + 60;	# input from the body (bytes / 4), max_tokens
@st = parallel(map { ['cap', 50, 60] } 1 .. 40);
my $admitted = grep { $_ eq '200' } @st;
my $refused = grep { $_ eq '429' } @st;
is($admitted + $refused, 40, "a burst of 40: $admitted admitted, $refused refused (429)");
# admitted while used + reserved < budget: at most ceil(budget / estimate) at once
ok($admitted <= int(($CAP + $estimate - 1) / $estimate),
	"no more admitted at once than the budget holds reservations for ($estimate each)");

# then one at a time until refused: the budget is used up to the bound

my @seq;
for (1 .. 40) {
	push @seq, stream('cap', 50, 60);
	last if $seq[-1] ne '200';
}
my $n = $admitted + grep { $_ eq '200' } @seq;
my ($req, $cin, $cout) = settled('cap', $n);
my $used = $cin + $cout;
($in, $out) = reported();
is($used, $in + $out, "charged ($used tokens) equals what was reported");
ok($used >= $CAP && $used < $CAP + $estimate,
	"the budget is used ($used of $CAP) and exceeded by less than one estimate ($estimate)");

###############################################################################
