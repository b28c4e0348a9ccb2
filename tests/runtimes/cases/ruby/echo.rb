STDIN.each_line { |line| print line }
