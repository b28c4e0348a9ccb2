print join("|", @ARGV), "\n";
