set terminal pngcairo size 1200,800 font "DejaVu Sans,11"
set output "docs/report/fig2_layer_magnitudes.png"
set title "tiny-llama: largest and median |x| of the residual stream per layer (mean over sequences)"
set logscale y
set xlabel 'layer'
set ylabel '|x|'
set key top left
set grid
set xtics 1
plot "docs/report/data/fig2_layer_magnitudes.dat" u 1:2 w lp lw 2 pt 7 t 'top 1', "docs/report/data/fig2_layer_magnitudes.dat" u 1:3 w lp lw 2 pt 5 t 'top 2', "docs/report/data/fig2_layer_magnitudes.dat" u 1:4 w lp lw 2 pt 9 t 'top 3', "docs/report/data/fig2_layer_magnitudes.dat" u 1:5 w lp lw 2 pt 13 t 'median'
