STDERR.puts "failing on purpose"
exit 3
