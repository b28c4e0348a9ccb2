my @hoard;
while (1) { push @hoard, "x" x (1 << 20); }
