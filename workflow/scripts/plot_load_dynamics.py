"""Figure: DNN load curves per epoch beside spring–block chains per step (paper 2, Fig. 4)."""

from featdyn.io import log_to
from featdyn.phase import mean_load_dynamics, read_cell
from featdyn.plots import save_figure
from featdyn.plots.springblock import LoadDynamicsCase, plot_load_dynamics
from featdyn.springblock import read_dynamics

sm = snakemake  # noqa: F821
log_to(sm.log[0])
panels = []
for case, cell, (steps, curves) in zip(sm.params.cases, sm.input.cells, read_dynamics(sm.input.springs)):
    epochs, dnn_curves = mean_load_dynamics(read_cell(cell)[0])
    panels.append(
        LoadDynamicsCase(
            title=f"{case['axis']} = {case['level']:g}, α = {case['alpha']:g}",
            spring_title=f"ε = {case['eps']:g}, μ_l / μ_r = {case['asymmetry']:g}",
            spring_curves=curves,
            spring_steps=steps,
            dnn_curves=dnn_curves,
            dnn_epochs=epochs,
        )
    )
save_figure(plot_load_dynamics(panels), sm.output[0])
