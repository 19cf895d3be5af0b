#!/usr/bin/perl

# Smoke test for the test harness itself (t/lib/Test/Nginx.pm): plain nginx
# is started, serves a static file, is reloaded with a new configuration,
# and a broken configuration makes run() die with an [emerg] in error.log.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }
BEGIN { push @INC, "$FindBin::Bin/lib" }

use Test::Nginx;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/);

# A broken configuration must make run() die.  This is done before the plan
# and in its own scope, so that the second instance is gone by the time a
# plan exists (the upstream library adds its teardown checks to every
# instance alive once a plan is set, this one only to planned instances).
# The expected [emerg] is excluded from the "no alerts" check.

my ($bad_died, $bad_error, $bad_log);

{
	my $t2 = Test::Nginx->new();

	$t2->skip_errors_check('emerg',
		qr/unknown directive "no_such_directive"/)
		if $t2->can('skip_errors_check');

	$t2->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    no_such_directive on;

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;
    }
}

EOF

	$bad_died = !eval { $t2->run(); 1 };
	$bad_error = $@;
	$bad_log = eval { $t2->read_file('error.log') };
	$bad_log = '' unless defined $bad_log;
}

# the working configuration; $extra goes into the server block

sub conf {
	my ($extra) = @_;

	return <<"EOF";

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location / {
            root %%TESTDIR%%;
        }

$extra
    }
}

EOF
}

$t->write_file_expand('nginx.conf', conf(''));
$t->write_file('index.html', 'harness smoke body');

$t->run()->plan(10);

###############################################################################

like(http_get('/index.html'), qr!^HTTP/1\.1 200 OK\x0d?$!m, 'static: 200');
like(http_get('/index.html'), qr/\x0d\x0a\x0d\x0aharness smoke body\z/,
	'static: body');
like(http_get('/missing.html'), qr!^HTTP/1\.1 404 !, 'missing file: 404');

my $head = http_head('/index.html');
like($head, qr!^HTTP/1\.1 200 !, 'head: 200');
unlike($head, qr/harness smoke body/, 'head: no body');

like(http_get('/new'), qr!^HTTP/1\.1 404 !, 'new location: absent');

# reload with an additional location

$t->write_file_expand('nginx.conf', conf(<<'EOF'));
        location = /new {
            return 204;
        }
EOF

$t->reload();

# This library's reload() returns only once the new workers serve requests,
# so the very first request must see the new configuration.  The upstream
# library's reload() just sends SIGHUP; poll a bit when running with it.

my $own_lib = $INC{'Test/Nginx.pm'} eq "$FindBin::Bin/lib/Test/Nginx.pm";
my $r = http_get('/new');

for (1 .. 50) {
	last if $own_lib || $r =~ m!^HTTP/1\.1 204 !;
	select undef, undef, undef, 0.1;
	$r = http_get('/new');
}

like($r, qr!^HTTP/1\.1 204 !, 'reload: new location active');
like(http_get('/index.html'), qr!^HTTP/1\.1 200 !, 'reload: static still');

# the broken configuration tried above

ok($bad_died && $bad_error =~ /^Can't start nginx/, 'bad config: run() died')
	or diag("run() result: $bad_error");
like($bad_log, qr/\[emerg\].*unknown directive "no_such_directive"/,
	'bad config: [emerg] in error.log');

###############################################################################
