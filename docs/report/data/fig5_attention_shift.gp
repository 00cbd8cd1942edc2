set terminal pngcairo size 1200,800 font "DejaVu Sans,11"
set output "docs/report/fig5_attention_shift.png"
set title "tiny-llama: attention mass on sink tokens, before and after ablation / injection"
set logscale y
set xlabel 'layer'
set ylabel 'attention (mean over heads and later queries)'
set key below
set grid
set xtics 1
plot "docs/report/data/fig5_attention_shift.dat" u 1:2 w lp lw 2 pt 5 t "on the first token (prompt)", "docs/report/data/fig5_attention_shift.dat" u 1:3 w lp lw 2 pt 7 t "... after zeroing its massive dims at layer 2", "docs/report/data/fig5_attention_shift.dat" u 1:4 w lp lw 2 pt 9 t "on token 30 (data)", "docs/report/data/fig5_attention_shift.dat" u 1:5 w lp lw 2 pt 11 t "... after injecting the first token's massive dims into it"
