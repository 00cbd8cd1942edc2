set terminal pngcairo size 1200,800 font "DejaVu Sans,11"
set output "docs/report/fig4_perplexity.png"
set title "perplexity when dims 86 170 177 215 243 of the first token after block 2 are set to zero or their mean"
set style fill solid 0.8
set boxwidth 0.6
set yrange [0:*]
unset key
set grid y
plot "docs/report/data/fig4_perplexity.dat" using 0:2:xtic(1) with boxes lc rgb '#3182bd', '' using 0:2:(sprintf('%.3f', $2)) with labels offset 0,1
