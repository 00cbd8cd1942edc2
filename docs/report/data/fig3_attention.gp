set terminal pngcairo size 1600,860 font "DejaVu Sans,9"
set output "docs/report/fig3_attention.png"
set multiplot layout 2,4 title "tiny-llama: attention (mean over heads); the first column is the sink"
set palette defined (0 'white', 0.3 '#9ecae1', 1 '#08306b')
set cbrange [0:1]
unset colorbox
set yrange [] reverse
set xtics ("<s>" 0, "S" 1, "um" 2, "mer" 3, " is" 4, " w" 5, "arm" 6, "." 7, " W" 8, "inter" 9, " is" 10, " col" 11, "d" 12, "." 13) rotate by 90 right font ',6'
set ytics ("<s>" 0, "S" 1, "um" 2, "mer" 3, " is" 4, " w" 5, "arm" 6, "." 7, " W" 8, "inter" 9, " is" 10, " col" 11, "d" 12, "." 13) font ',6'
set title 'layer 0'
plot "docs/report/data/fig3_attention_0.dat" matrix with image notitle
set title 'layer 1'
plot "docs/report/data/fig3_attention_1.dat" matrix with image notitle
set title 'layer 2'
plot "docs/report/data/fig3_attention_2.dat" matrix with image notitle
set title 'layer 3'
plot "docs/report/data/fig3_attention_3.dat" matrix with image notitle
set title 'layer 4'
plot "docs/report/data/fig3_attention_4.dat" matrix with image notitle
set title 'layer 5'
plot "docs/report/data/fig3_attention_5.dat" matrix with image notitle
set title 'layer 6'
plot "docs/report/data/fig3_attention_6.dat" matrix with image notitle
set title 'layer 7'
plot "docs/report/data/fig3_attention_7.dat" matrix with image notitle
unset multiplot
