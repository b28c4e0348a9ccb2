<?php
fwrite(STDERR, "failing on purpose\n");
exit(3);
