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
$t->plan(2 * @examples + 2 + 5 + 5);

for my $name (@examples) {
	my $conf = slurp("$confdir/$name");

	# the module is loaded by the suite (TEST_NGINX_GLOBALS); paths go to the test dir
	$conf =~ s/^load_module .*$//m;
	$conf =~ s{/etc/nginx/gpt_auth/keys}{$d/keys}g;
	$conf =~ s{/etc/nginx/gpt_auth/[\w.-]+\.secret}{$d/secret}g;
	$conf =~ s{/etc/nginx/gpt_auth/[\w.-]+\.allow}{$d/allow}g;
	$conf =~ s{/etc/nginx/snippets/gpt_auth_fetch\.conf}{$confdir/gpt_auth_fetch.conf}g;
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
$t->write_file('prices.txt', "gpt-4o input=2.50 cached_input=1.25 output=10\n");
$t->write_file('gpt_auth_fetch.conf', slurp("$confdir/gpt_auth_fetch.conf"));
mkdir("$d/tmp");
$demo = "%%TEST_GLOBALS%%\n$demo";
$demo =~ s/^(error_log|pid) .*$//mg;
my ($ok, $out) = conf_test($t, 'nginx-demo.conf', $demo);
ok($ok, 'demo.conf passes nginx -t') or diag($out);
unlike($out, qr/\[warn\]/, 'demo.conf: no warnings');

# the README's first example, as it runs after `make install`: Debian's nginx.conf has loaded
# the module already (here: TEST_GLOBALS), so the example must not load it again

my ($first) = slurp("$FindBin::Bin/../README.md") =~ /```nginx\n(.*?)```/s;
ok($first, 'README: the first example');
(my $first_active = $first) =~ s/#.*$//mg;
unlike($first_active, qr/load_module/, 'README first example: no load_module');
$first =~ s{/etc/nginx/gpt_auth\.keys}{$d/keys}g;
$first =~ s{/etc/nginx/gpt4\.allow}{$d/allow}g;
$first =~ s{http://chat-ui}{http://127.0.0.1:1}g;
$first =~ s/^http \{$/http {\n    %%TEST_GLOBALS_HTTP%%/m;
($ok, $out) = conf_test($t, 'readme-first.conf', "%%TEST_GLOBALS%%\nevents {}\n$first");
ok($ok, 'README first example passes nginx -t with the module loaded once') or diag($out);
my ($module) = ($ENV{TEST_NGINX_GLOBALS} // '') =~ /(load_module\s+\S+;)/;
($ok, $out) = conf_test($t, 'readme-twice.conf', "%%TEST_GLOBALS%%\n$module\nevents {}\n$first");
ok(!$ok, 'loading the module a second time fails');
like($out, qr/module "\S+" is already loaded/, '... with "already loaded" (why the example has none)');

# make install (into a DESTDIR): the module enabled the Debian way and the fetch snippet where
# Debian keeps snippets

my $root = "$d/destdir";
my $make = `make -C $FindBin::Bin/.. -s install DESTDIR=$root 2>&1`;
is($?, 0, 'make install DESTDIR=...') or diag($make);
ok(-f "$root/usr/lib/nginx/modules/ngx_http_gpt_auth_module.so", 'installed: the module');
is(slurp("$root/usr/share/nginx/modules-available/mod-http-gpt-auth.conf"),
	"load_module /usr/lib/nginx/modules/ngx_http_gpt_auth_module.so;\n", 'installed: modules-available');
is(readlink("$root/etc/nginx/modules-enabled/50-mod-http-gpt-auth.conf"),
	'/usr/share/nginx/modules-available/mod-http-gpt-auth.conf', 'installed: enabled in modules-enabled');
is(slurp("$root/etc/nginx/snippets/gpt_auth_fetch.conf"), slurp("$confdir/gpt_auth_fetch.conf"),
	'installed: the fetch snippet in /etc/nginx/snippets/');

###############################################################################
