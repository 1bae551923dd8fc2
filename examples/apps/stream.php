<?php
// Streams three parts; the second waits for ?gate= to exist.
echo "part1\n";
flush();
$gate = $_GET['gate'] ?? '';
for ($i = 0; $gate !== '' && !file_exists($gate) && $i < 500; $i++) {
    usleep(10000);
}
echo "part2\n";
