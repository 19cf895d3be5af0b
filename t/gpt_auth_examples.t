#!/usr/bin/perl

# gpt_auth: the shipped configurations (nginx-conf/*.conf) pass `nginx -t`, with their paths
# pointed at files of the test directory, so the examples in the repository stay valid.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;
use GptAuth;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_ssl http_v2 proxy limit_req/);
my $d = $t->testdir();
my $confdir = "$FindBin::Bin/../nginx-conf";

sub slurp {
	my ($f) = @_;
	open(my $fh, '<', $f) or die "$f: $!";
	local $/;
	return <$fh>;
}

# files the examples name
$t->write_file('keys', key_line(new_key_bytes()) . "\n");
chmod 0600, "$d/keys";
$t->write_file('secret', "client-secret\n");
$t->write_file('allow', "\@example.com\n");
system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $d/tls.key -out $d/tls.pem"
	. " -days 2 -subj /CN=example.com >/dev/null 2>&1") == 0
	or die "openssl req failed";

my @examples = qw/ example-google.conf example-oidc.conf /;
$t->plan(2 * @examples + 2);

for my $name (@examples) {
	my $conf = slurp("$confdir/$name");

	# the module is loaded by the suite (TEST_NGINX_GLOBALS); paths go to the test dir
	$conf =~ s/^load_module .*$//m;
	$conf =~ s{/etc/nginx/gpt_auth/keys}{$d/keys}g;
	$conf =~ s{/etc/nginx/gpt_auth/[\w.-]+\.secret}{$d/secret}g;
	$conf =~ s{/etc/nginx/gpt_auth/[\w.-]+\.allow}{$d/allow}g;
	$conf =~ s{/etc/nginx/gpt_auth_fetch\.conf}{$confdir/gpt_auth_fetch.conf}g;
	$conf =~ s{ssl_certificate\s+\S+;}{ssl_certificate $d/tls.pem;}g;
	$conf =~ s{ssl_certificate_key\s+\S+;}{ssl_certificate_key $d/tls.key;}g;
	$conf =~ s{/var/log/nginx/}{$d/}g;
	$conf = "%%TEST_GLOBALS%%\n$conf";
	$conf =~ s/^http \{$/http {\n    %%TEST_GLOBALS_HTTP%%/m;

	(my $active = $conf) =~ s/#.*$//mg;
	unlike($active, qr{/etc/nginx/}, "$name: every path replaced");
	my ($ok, $out) = conf_test($t, $name, $conf);
	ok($ok, "$name passes nginx -t") or diag($out);
}

# the demo configuration, with the files tools/run-demo.sh creates

my $demo = slurp("$confdir/demo.conf");
for my $f (qw/ demo.keys /) {
	$t->write_file($f, key_line(new_key_bytes()) . "\n");
	chmod 0600, "$d/$f";
}
$t->write_file('demo.secret', "demo-secret\n");
$t->write_file('company.allow', "\@example.com\n");
$t->write_file('gpt4.allow', "alice\@example.com\n");
$t->write_file('gpt_auth_fetch.conf', slurp("$confdir/gpt_auth_fetch.conf"));
mkdir("$d/tmp");
$demo = "%%TEST_GLOBALS%%\n$demo";
$demo =~ s/^(error_log|pid) .*$//mg;
my ($ok, $out) = conf_test($t, 'nginx-demo.conf', $demo);
ok($ok, 'demo.conf passes nginx -t') or diag($out);
unlike($out, qr/\[warn\]/, 'demo.conf: no warnings');

###############################################################################
