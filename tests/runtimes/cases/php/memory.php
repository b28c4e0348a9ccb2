<?php
$hoard = [];
while (true) { $hoard[] = str_repeat("x", 1 << 20); }
