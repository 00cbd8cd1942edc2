set terminal pngcairo size 1200,800 font "DejaVu Sans,11"
set output "docs/report/fig1_magnitudes_3d.png"
set title "tiny-llama: |x| of the hidden state after block 2"
set xlabel 'token'
set ylabel 'dim'
set zlabel '|x|' rotate parallel
set view 60, 30
set xtics ("<s>" 0, "S" 1, "um" 2, "mer" 3, " is" 4, " w" 5, "arm" 6, "." 7, " W" 8, "inter" 9, " is" 10, " col" 11, "d" 12, "." 13) rotate by 45 right font ',8'
set ticslevel 0
unset key
splot "docs/report/data/fig1_magnitudes_3d.dat" using 1:2:3 with impulses lc rgb '#1f4e9e' lw 1
