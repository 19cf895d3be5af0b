package GptAuthQuota;

# Helpers for the per-user budget tests (t/gpt_auth_quota*.t): the calendar arithmetic of
# gpt_auth_quota_zone's periods, written here again in Perl from the documented rules (days of
# `day_length` seconds since the epoch shifted by `utc_offset`; months are calendar months made
# of such days), so the tests can say when a period must reset without asking the module.

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT = qw/ days_from_civil civil_from_days periods format_utc retry_after_ok
	wait_until quota_json cookie_for /;

use JSON::PP;
use POSIX qw/ floor /;
use Time::HiRes qw/ time sleep /;
use GptAuth qw/ mint_cookie /;

# Days since 1970-01-01 of a proleptic Gregorian date.
sub days_from_civil {
	my ($y, $m, $d) = @_;
	$y -= 1 if $m <= 2;
	my $era = floor($y / 400);
	my $yoe = $y - $era * 400;
	my $doy = int((153 * ($m > 2 ? $m - 3 : $m + 9) + 2) / 5) + $d - 1;
	my $doe = $yoe * 365 + int($yoe / 4) - int($yoe / 100) + $doy;
	return $era * 146097 + $doe - 719468;
}

# (year, month, day) of a day number since 1970-01-01.
sub civil_from_days {
	my ($z) = @_;
	$z += 719468;
	my $era = floor($z / 146097);
	my $doe = $z - $era * 146097;
	my $yoe = int(($doe - int($doe / 1460) + int($doe / 36524) - int($doe / 146096)) / 365);
	my $y = $yoe + $era * 400;
	my $doy = $doe - (365 * $yoe + int($yoe / 4) - int($yoe / 100));
	my $mp = int((5 * $doy + 2) / 153);
	my $d = $doy - int((153 * $mp + 2) / 5) + 1;
	my $m = $mp < 10 ? $mp + 3 : $mp - 9;
	return ($m <= 2 ? $y + 1 : $y, $m, $d);
}

# periods($unix_seconds, day_length => 86400, utc_offset => 0): the periods in force at that
# second: { day, month (numbers), day_label, month_label, day_ends, month_ends (Unix) }.
sub periods {
	my ($now, %c) = @_;
	my $len = $c{day_length} // 86400;
	my $off = $c{utc_offset} // 0;
	$now = floor($now);
	my $day = floor(($now + $off) / $len);
	my ($y, $m) = civil_from_days($day);
	my ($ny, $nm) = $m == 12 ? ($y + 1, 1) : ($y, $m + 1);
	my $next_month = days_from_civil($ny, $nm, 1);
	my ($dy, $dm, $dd) = civil_from_days($day);
	return {
		day => $day,
		month => ($y - 1970) * 12 + $m - 1,
		day_label => sprintf('%04d-%02d-%02d', $dy, $dm, $dd),
		month_label => sprintf('%04d-%02d', $y, $m),
		day_ends => ($day + 1) * $len - $off,
		month_ends => $next_month * $len - $off,
	};
}

# YYYY-MM-DDTHH:MM:SSZ
sub format_utc {
	my ($t) = @_;
	my @g = gmtime($t);
	return sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ',
		$g[5] + 1900, $g[4] + 1, $g[3], $g[2], $g[1], $g[0]);
}

# retry_after_ok($retry_after, $resets_at, $t0, $t1, $period, %clock): true if the answer fits
# some second nginx may have seen between $t0 and $t1 (Time::HiRes times taken around the
# request; nginx's cached clock may lag by a moment): Retry-After is the whole seconds from then
# to the end of the `day` or `month` period, and resets_at (if given) is that end.
sub retry_after_ok {
	my ($ra, $resets_at, $t0, $t1, $period, %clock) = @_;
	return 0 unless defined $ra && $ra =~ /^\d+\z/;
	for my $s (floor($t0) - 1 .. floor($t1)) {
		my $end = periods($s, %clock)->{"${period}_ends"};
		my $want = $end - $s;
		$want = 1 if $want < 1;
		next unless $ra == $want;
		return 1 if !defined $resets_at || $resets_at eq format_utc($end);
	}
	return 0;
}

# Sleeps until the given Unix time (plus a margin, default 0.3 s).
sub wait_until {
	my ($when, $margin) = @_;
	my $d = $when + ($margin // 0.3) - time();
	sleep($d) if $d > 0;
}

# Decodes a JSON body; undef if it is not JSON.
sub quota_json {
	my ($body) = @_;
	return eval { JSON::PP->new->utf8->decode($body) };
}

# "gpt_auth=<cookie>" for an address, signed with $key.
sub cookie_for {
	my ($key, $email, %a) = @_;
	return 'gpt_auth=' . mint_cookie(key => $key, email => $email, %a);
}

1;
