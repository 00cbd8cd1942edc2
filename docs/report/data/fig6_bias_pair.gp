set terminal pngcairo size 1400,600 font "DejaVu Sans,11"
set output "docs/report/fig6_bias_pair.png"
set multiplot layout 1,2
set grid
set xtics 1
set xlabel 'layer'
set key top left
set title 'largest |x| of the residual stream (mean over sequences)'
set logscale y
set ylabel '|x|'
plot "docs/report/data/fig6_bias_pair.dat" u 1:2 w lp lw 2 pt 7 t "tiny-llama-baseline", "docs/report/data/fig6_bias_pair.dat" u 1:3 w lp lw 2 pt 5 t "tiny-llama-kvbias"
unset logscale y
set yrange [0:*]
set title 'where attention goes (mean over heads, queries 1..T-1)'
set ylabel 'attention'
plot "docs/report/data/fig6_bias_pair.dat" u 1:4 w lp lw 2 pt 7 t "tiny-llama-baseline: first token", "docs/report/data/fig6_bias_pair.dat" u 1:5 w lp lw 2 pt 5 t "tiny-llama-kvbias: first token", "docs/report/data/fig6_bias_pair.dat" u 1:7 w lp lw 2 pt 9 dt 2 t "tiny-llama-kvbias: bias slot"
unset multiplot
