"""A hand-computed table checks the specification.

Every number below was worked out by hand from the formulas in ``_spec.py`` (points chosen so that the
answers are exact or simple closed forms), not produced by running the library. The reference is checked
against the table, and so is every host backend through the public API. The rows also pin the documented
conventions: mae's sign(0) = 0, quantile's subgradient 0 at r = 0, huber quadratic at |d| = delta,
smooth_l1 linear at |d| = beta and equal to mae for beta = 0, log_cosh finite at |d| = 1e30, poisson_nll
without the Stirling term in both log_input modes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fusedloss as fl
from fusedloss import _reference
from fusedloss._spec import PRED_DOMAINS, REGISTRY, TARGET_DOMAINS

from conftest import full_params, loss_fn, require_support

LN2 = 0.6931471805599453
LN3 = 1.0986122886681098
LN4 = 1.3862943611198906

# (loss, params, pred, target, value, gradient, hessian)
TABLE = [
    # mse: d^2, 2d, 2
    ("mse", {}, 3.0, 1.0, 4.0, 4.0, 2.0),
    ("mse", {}, -0.5, 0.25, 0.5625, -1.5, 2.0),
    ("mse", {}, 7.0, 7.0, 0.0, 0.0, 2.0),
    # mae: |d|, sign(d) with sign(0) = 0, 0
    ("mae", {}, 3.0, 1.0, 2.0, 1.0, 0.0),
    ("mae", {}, -2.0, 0.5, 2.5, -1.0, 0.0),
    ("mae", {}, 1.0, 1.0, 0.0, 0.0, 0.0),
    # huber: quadratic for |d| <= delta (so also at |d| = delta), linear beyond
    ("huber", {}, 1.5, 1.0, 0.125, 0.5, 1.0),
    ("huber", {}, 2.0, 1.0, 0.5, 1.0, 1.0),  # |d| = delta: quadratic branch, h = 1
    ("huber", {}, -2.0, 1.0, 2.5, -1.0, 0.0),  # 1 * (3 - 0.5)
    ("huber", {}, 0.0, 0.0, 0.0, 0.0, 1.0),
    ("huber", {"delta": 2.0}, 3.0, 0.0, 4.0, 2.0, 0.0),  # 2 * (3 - 1)
    ("huber", {"delta": 2.0}, -2.0, 0.0, 2.0, -2.0, 1.0),  # |d| = delta
    ("huber", {"delta": 0.5}, 0.25, 0.0, 0.03125, 0.25, 1.0),
    ("huber", {"delta": 0.5}, -1.0, 0.0, 0.375, -0.5, 0.0),  # 0.5 * (1 - 0.25)
    # asymmetric_huber: huber times a = alpha_left (d < 0) or alpha_right (d >= 0, so also at d = 0)
    ("asymmetric_huber", {}, 1.5, 1.0, 0.125, 0.5, 1.0),  # alphas 1: huber
    ("asymmetric_huber", {"alpha_left": 0.5, "alpha_right": 2.0}, 3.0, 1.0, 3.0, 2.0, 0.0),  # 2 * (2 - 0.5)
    ("asymmetric_huber", {"alpha_left": 0.5, "alpha_right": 2.0}, 0.0, 0.5, 0.0625, -0.25, 0.5),
    ("asymmetric_huber", {"alpha_left": 0.5, "alpha_right": 2.0}, -2.0, 0.0, 0.75, -0.5, 0.0),  # 0.5 * 1.5
    ("asymmetric_huber", {"alpha_left": 0.5, "alpha_right": 2.0}, 1.0, 1.0, 0.0, 0.0, 2.0),  # d = 0: right
    ("asymmetric_huber", {"delta": 2.0, "alpha_left": 3.0, "alpha_right": 0.25}, 1.0, 0.0, 0.125, 0.25, 0.25),
    ("asymmetric_huber", {"delta": 2.0, "alpha_left": 3.0, "alpha_right": 0.25}, -2.0, 0.0, 6.0, -6.0, 3.0),
    # smooth_l1: quadratic d^2/(2 beta) for |d| < beta, |d| - beta/2 for |d| >= beta
    ("smooth_l1", {}, 1.5, 1.0, 0.125, 0.5, 1.0),
    ("smooth_l1", {}, 2.0, 1.0, 0.5, 1.0, 0.0),  # |d| = beta: linear branch, h = 0
    ("smooth_l1", {}, -2.0, 1.0, 2.5, -1.0, 0.0),
    ("smooth_l1", {"beta": 0.5}, 0.25, 0.0, 0.0625, 0.5, 2.0),
    ("smooth_l1", {"beta": 0.5}, 2.0, 0.0, 1.75, 1.0, 0.0),
    ("smooth_l1", {"beta": 0.0}, 0.75, 0.0, 0.75, 1.0, 0.0),  # beta = 0 is mae
    ("smooth_l1", {"beta": 0.0}, -2.0, 0.0, 2.0, -1.0, 0.0),
    ("smooth_l1", {"beta": 0.0}, 3.0, 3.0, 0.0, 0.0, 0.0),  # ... including sign(0) = 0
    # pseudo_huber: s = sqrt(1 + (d/delta)^2); delta^2 (s - 1), d / s, 1 / s^3
    ("pseudo_huber", {}, 0.0, 0.0, 0.0, 0.0, 1.0),
    ("pseudo_huber", {}, 0.75, 0.0, 0.25, 0.6, 0.512),  # s = 5/4
    ("pseudo_huber", {}, 3.4, 1.0, 1.6, 12 / 13, 1 / 17.576),  # d = 2.4, s = 2.6
    ("pseudo_huber", {"delta": 2.0}, -1.5, 0.0, 1.0, -1.2, 0.512),  # r = -3/4, s = 5/4: 4 * 1/4
    # log_cosh: log(cosh d), tanh d, 1 - tanh^2 d
    ("log_cosh", {}, 0.0, 0.0, 0.0, 0.0, 1.0),
    ("log_cosh", {}, LN2, 0.0, math.log(1.25), 0.6, 0.64),  # cosh(ln 2) = 5/4, tanh = 3/5
    ("log_cosh", {}, 0.0, LN3, math.log(5 / 3), -0.8, 0.36),  # cosh(ln 3) = 5/3, tanh = 4/5
    ("log_cosh", {}, 21.0, 1.0, 20.0 - LN2, 1.0, 4 * math.exp(-40.0)),  # 1 - tanh^2 = 4e/(1+e)^2, e = e^-40
    ("log_cosh", {}, 1e30, 0.0, 1e30, 1.0, 0.0),  # no overflow: |d| - log 2 rounds to |d|
    ("log_cosh", {}, -1e30, 0.0, 1e30, -1.0, 0.0),
    ("log_cosh", {}, 800.0, 0.0, 800.0 - LN2, 1.0, 0.0),  # cosh(800) overflows, its log does not
    # quantile: r = y - p; q r or (q - 1) r; -q, 1 - q, and 0 at r = 0
    ("quantile", {"quantile": 0.25}, 1.0, 2.0, 0.25, -0.25, 0.0),
    ("quantile", {"quantile": 0.25}, 3.0, 2.0, 0.75, 0.75, 0.0),
    ("quantile", {"quantile": 0.25}, 2.0, 2.0, 0.0, 0.0, 0.0),
    ("quantile", {}, 0.0, 3.0, 1.5, -0.5, 0.0),
    ("quantile", {"quantile": 0.9}, 2.0, 0.0, 0.2, 0.1, 0.0),  # (0.9 - 1) * (-2)
    ("quantile", {"quantile": 0.9}, -1.0, 0.0, 0.9, -0.9, 0.0),
    # poisson_nll, log_input: exp(p) - y p, exp(p) - y, exp(p) (no Stirling term: at p = 0, y = 3 it is 1)
    ("poisson_nll", {}, 0.0, 3.0, 1.0, -2.0, 1.0),
    ("poisson_nll", {}, LN2, 1.0, 2.0 - LN2, 1.0, 2.0),
    ("poisson_nll", {}, LN4, 0.0, 4.0, 4.0, 4.0),
    ("poisson_nll", {}, -LN2, 2.0, 0.5 + 2 * LN2, -1.5, 0.5),
    # poisson_nll, rate: p - y log(p + eps), 1 - y/(p + eps), y/(p + eps)^2
    ("poisson_nll", {"log_input": False, "eps": 0.0}, 2.0, 2.0, 2.0 - 2 * LN2, 0.0, 0.5),
    ("poisson_nll", {"log_input": False, "eps": 0.0}, 4.0, 1.0, 4.0 - LN4, 0.75, 0.0625),
    ("poisson_nll", {"log_input": False, "eps": 0.0}, 0.5, 0.0, 0.5, 1.0, 0.0),
    ("poisson_nll", {"log_input": False, "eps": 0.5}, 1.5, 4.0, 1.5 - 4 * LN2, -1.0, 1.0),  # q = 2
    # default eps = 1e-8 at p = 0: -y log(1e-8) = 8 y ln 10
    ("poisson_nll", {"log_input": False}, 0.0, 1.0, 8 * 2.302585092994046, 1.0 - 1e8, 1e16),
    # tweedie rho = 1.5: 2 e^{p/2} + 2 y e^{-p/2}; e^{p/2} - y e^{-p/2}; (e^{p/2} + y e^{-p/2}) / 2
    ("tweedie", {}, 0.0, 1.0, 4.0, 0.0, 1.0),
    ("tweedie", {}, 2 * LN2, 3.0, 7.0, 0.5, 1.75),  # e^{p/2} = 2
    ("tweedie", {}, 0.0, 0.0, 2.0, 1.0, 0.5),
    ("tweedie", {}, -2 * LN2, 2.0, 9.0, -3.5, 2.25),  # e^{p/2} = 1/2: 1 + 8; 0.5 - 4; 0.25 + 2
    # tweedie rho = 1.25 at p = 0: 1/0.75 + y/0.25; 1 - y; 0.75 + 0.25 y
    ("tweedie", {"power": 1.25}, 0.0, 2.0, 4 / 3 + 8.0, -1.0, 1.25),
    # tweedie rho = 0 (scikit-learn's form): (e^p - y)^2 / 2; e^{2p} - y e^p; 2 e^{2p} - y e^p
    ("tweedie", {"power": 0.0}, LN2, -1.0, 4.5, 6.0, 10.0),  # e^p = 2
    ("tweedie", {"power": 0.0}, 0.0, 3.0, 2.0, -2.0, -1.0),  # a negative Hessian
    # rho = -1: e^{3p}/3 - y e^{2p}/2; e^{3p} - y e^{2p}; 3 e^{3p} - 2 y e^{2p}
    ("tweedie", {"power": -1.0}, LN2, 1.0, 8 / 3 - 2.0, 4.0, 16.0),
    # rho = 1 (Poisson): e^p - y p; e^p - y; e^p
    ("tweedie", {"power": 1.0}, LN2, 3.0, 2.0 - 3 * LN2, -1.0, 2.0),
    ("tweedie", {"power": 1.0}, 0.0, 0.0, 1.0, 1.0, 1.0),
    # rho = 2 (Gamma): p + y e^{-p}; 1 - y e^{-p}; y e^{-p}
    ("tweedie", {"power": 2.0}, LN2, 3.0, LN2 + 1.5, -0.5, 1.5),
    # rho = 3 (inverse Gaussian): -e^{-p} + y e^{-2p} / 2; e^{-p} - y e^{-2p}; -e^{-p} + 2 y e^{-2p}
    ("tweedie", {"power": 3.0}, 0.0, 4.0, 1.0, -3.0, 7.0),
    # fair: u = |d|/c: c^2 (u - log(1+u)); d/(1+u); 1/(1+u)^2
    ("fair", {}, 1.0, 0.0, 1.0 - LN2, 0.5, 0.25),
    ("fair", {}, -3.0, 0.0, 3.0 - LN4, -0.75, 1.0 / 16),
    ("fair", {}, 2.0, 2.0, 0.0, 0.0, 1.0),
    ("fair", {"c": 2.0}, 2.0, 0.0, 4.0 * (1.0 - LN2), 1.0, 0.25),  # u = 1
    ("fair", {"c": 0.5}, 0.0, 1.5, 0.25 * (3.0 - LN4), -0.375, 1.0 / 16),  # u = 3
    # expectile: w = tau (d <= 0) or 1 - tau (d > 0): w d^2; 2 w d; 2 w
    ("expectile", {}, 3.0, 1.0, 2.0, 2.0, 1.0),  # tau = 0.5: d^2/2
    ("expectile", {"expectile": 0.75}, 3.0, 1.0, 1.0, 1.0, 0.5),  # over-prediction: 1 - tau
    ("expectile", {"expectile": 0.75}, -1.0, 1.0, 3.0, -3.0, 1.5),  # under-prediction: tau
    ("expectile", {"expectile": 0.75}, 2.0, 2.0, 0.0, 0.0, 1.5),  # d = 0: tau's side
    ("expectile", {"expectile": 0.125}, 0.5, 0.0, 0.21875, 0.875, 1.75),
    # cauchy: z = d/c: c^2/2 log(1+z^2); d/(1+z^2); (1-z^2)/(1+z^2)^2
    ("cauchy", {}, 1.0, 0.0, LN2 / 2, 0.5, 0.0),  # |z| = 1: the Hessian changes sign
    ("cauchy", {}, 0.0, 0.0, 0.0, 0.0, 1.0),
    ("cauchy", {}, -3.0, 0.0, math.log(10.0) / 2, -0.3, -0.08),  # (1 - 9) / 100
    ("cauchy", {"c": 2.0}, 1.0, 0.0, 2.0 * math.log(1.25), 0.8, 0.48),  # z = 1/2: 0.75 / 1.5625
    ("cauchy", {"c": 0.5}, 0.0, 1.0, 0.125 * math.log(5.0), -0.2, -0.12),  # z = -2: -3 / 25
    # general_robust (Barron): alpha = 1, c = 1 is sqrt(1 + d^2) - 1; d/sqrt(1 + d^2); (1 + d^2)^(-3/2)
    ("general_robust", {}, 0.0, 0.0, 0.0, 0.0, 1.0),
    ("general_robust", {}, 1.75, 1.0, 0.25, 0.6, 0.512),  # u = 1.5625 = 1.25^2
    ("general_robust", {}, 0.0, 2.4, 1.6, -12.0 / 13.0, 1.0 / 17.576),  # u = 6.76 = 2.6^2
    ("general_robust", {"alpha": 2.0, "c": 2.0}, 3.0, 1.0, 0.5, 0.5, 0.25),  # z/2; d/c^2; 1/c^2
    ("general_robust", {"alpha": 0.0}, 2.0, 0.0, LN3, 2.0 / 3.0, -1.0 / 9.0),  # log(1 + z/2), z = 4
    ("general_robust", {"alpha": -2.0}, 2.0, 0.0, 1.0, 0.5, -0.25),  # Geman-McClure 2z/(z + 4); u = 2
    ("general_robust", {"alpha": 4.0}, 2.0, 0.0, 4.0, 6.0, 7.0),  # d^2/2 + d^4/8; d + d^3/2; 1 + 3d^2/2
    ("general_robust", {"alpha": -math.inf}, math.sqrt(2 * LN2), 0.0, 0.5, math.sqrt(2 * LN2) / 2,
     (1 - 2 * LN2) / 2),  # Welsch: exp(-z/2) = 1/2
    ("general_robust", {"alpha": math.inf}, math.sqrt(2 * LN2), 0.0, 1.0, 2 * math.sqrt(2 * LN2), 2 * (1 + 2 * LN2)),
    # gamma (scikit-learn's HalfGammaLoss, no constant): p + y e^{-p}; 1 - y e^{-p}; y e^{-p}
    ("gamma", {}, 0.0, 1.0, 1.0, 0.0, 1.0),
    ("gamma", {}, LN2, 4.0, LN2 + 2.0, -1.0, 2.0),  # e^{-p} = 1/2
    ("gamma", {}, -LN2, 0.5, 1.0 - LN2, 0.0, 1.0),  # e^{-p} = 2: the minimum, p = log y
    ("gamma", {}, LN4, 1.0, LN4 + 0.25, 0.75, 0.25),
    # tweedie_identity (scikit-learn's HalfTweedieLossIdentity, its y-only term included), k = 2 - rho:
    # p^k/k - y p^(k-1)/(k-1) + y^k/(k (k-1));  p^-rho (p - y);  p^-rho ((1 - rho) + rho y/p)
    ("tweedie_identity", {}, 1.0, 1.0, 0.0, 0.0, 1.0),  # the minimum p = y
    ("tweedie_identity", {}, 4.0, 1.0, 1.0, 0.375, -1.0 / 64),  # 4 + 1 - 4;  3/8;  (-1/2 + 3/8)/8
    ("tweedie_identity", {}, 4.0, 0.0, 4.0, 0.5, -1.0 / 16),  # y = 0: p^k/k only
    ("tweedie_identity", {"power": 0.5}, 1.0, 4.0, 10.0 / 3, -3.0, 2.5),  # 2/3 - 8 + 32/3
    ("tweedie_identity", {"power": 0.0}, -1.0, 2.0, 4.5, -3.0, 1.0),  # half squared error, p real
    ("tweedie_identity", {"power": 1.0}, 2.0, 1.0, 1.0 - LN2, 0.5, 0.25),  # y log(y/p) + p - y;  1 - y/p;  y/p^2
    ("tweedie_identity", {"power": 2.0}, 2.0, 1.0, LN2 - 0.5, 0.25, 0.0),  # log(p/y) + y/p - 1;  (2y/p - 1)/p^2
    ("tweedie_identity", {"power": 3.0}, 1.0, 2.0, 0.25, -1.0, 4.0),  # -1 + 1 + 1/4
    ("tweedie_identity", {"power": -1.0}, 2.0, -1.0, 14.0 / 3, 6.0, 5.0),  # y < 0: 8/3 + 2, no y^k term
    # squared_log: r = log((1+p)/(1+y)): r^2/2; r/(1+p); (1-r)/(1+p)^2
    ("squared_log", {}, 0.0, 0.0, 0.0, 0.0, 1.0),
    ("squared_log", {}, 1.0, 0.0, LN2 * LN2 / 2, LN2 / 2, (1 - LN2) / 4),
    ("squared_log", {}, 0.0, 1.0, LN2 * LN2 / 2, -LN2, 1 + LN2),
    ("squared_log", {}, -0.5, 1.0, 2 * LN2 * LN2, -4 * LN2, 4 * (1 + 2 * LN2)),  # r = log(1/4) = -2 log 2
    ("squared_log", {}, 3.0, -0.5, 1.5 * LN2 * LN2 * 3, 3 * LN2 / 4, (1 - 3 * LN2) / 16),  # r = log 8: h < 0
    # msle: twice squared_log: r^2; 2 r/(1+p); 2 (1-r)/(1+p)^2
    ("msle", {}, 0.0, 0.0, 0.0, 0.0, 2.0),
    ("msle", {}, 1.0, 0.0, LN2 * LN2, LN2, (1 - LN2) / 2),
    ("msle", {}, 0.0, 1.0, LN2 * LN2, -2 * LN2, 2 * (1 + LN2)),
    ("msle", {}, -0.5, 1.0, 4 * LN2 * LN2, -8 * LN2, 8 * (1 + 2 * LN2)),  # r = log(1/4) = -2 log 2
    ("msle", {}, 3.0, -0.5, 9 * LN2 * LN2, 1.5 * LN2, (1 - 3 * LN2) / 8),  # r = log 8: h < 0
    # mape: m = max(|y|, eps): |d|/m; sign(d)/m (sign(0) = 0); 0
    ("mape", {}, 3.0, 2.0, 0.5, 0.5, 0.0),
    ("mape", {}, -1.0, -4.0, 0.75, 0.25, 0.0),
    ("mape", {}, 1.0, -0.5, 3.0, 2.0, 0.0),
    ("mape", {}, 2.0, 2.0, 0.0, 0.0, 0.0),  # d = 0: subgradient 0
    ("mape", {}, -1.0, 0.0, 2.0**52, -(2.0**52), 0.0),  # y = 0: divided by the float64 eps = 2^-52
    ("mape", {"epsilon": 1.0}, 1.0, 0.5, 0.5, 1.0, 0.0),  # LightGBM's max(1, |y|)
    ("mape", {"epsilon": 1.0}, 0.0, 4.0, 1.0, -0.25, 0.0),
    # exponential (scikit-learn's ExponentialLoss): y e^{-x} + (1-y) e^{x}; (1-y) e^{x} - y e^{-x}; h = l
    ("exponential", {}, 0.0, 1.0, 1.0, -1.0, 1.0),
    ("exponential", {}, 0.0, 0.0, 1.0, 1.0, 1.0),
    ("exponential", {}, LN2, 1.0, 0.5, -0.5, 0.5),
    ("exponential", {}, LN2, 0.0, 2.0, 2.0, 2.0),
    ("exponential", {}, LN2, 0.5, 1.25, 0.75, 1.25),  # 0.25 + 1
    ("exponential", {}, -LN2, 0.25, 0.875, -0.125, 0.875),  # 0.5 + 0.375
    ("exponential", {}, -1e30, 0.0, 0.0, 0.0, 0.0),  # a hard target has one side only: not 0 * inf
    ("exponential", {}, 1e30, 1.0, 0.0, 0.0, 0.0),
    # binary_cross_entropy on probabilities: -(pw y log p + (1-y) log(1-p)); logs clamped at -100
    ("binary_cross_entropy", {}, 0.5, 1.0, LN2, -2.0, 4.0),
    ("binary_cross_entropy", {}, 0.25, 0.0, LN4 - LN3, 4 / 3, 16 / 9),  # -log(3/4); 1/(1-p); 1/(1-p)^2
    ("binary_cross_entropy", {}, 0.8, 0.5, math.log(2.5), 1.875, 13.28125),  # soft target: -0.5 log 0.16
    ("binary_cross_entropy", {"pos_weight": 2.0}, 0.5, 1.0, 2 * LN2, -4.0, 8.0),
    # log clamp at -100, denominators at ATen's EPSILON (1e-12 as a float32, 9.999999960041972e-13)
    ("binary_cross_entropy", {}, 0.0, 1.0, 100.0, -1 / 9.999999960041972e-13, 1 / 9.999999960041972e-13),
    # ... on logits: (1-y) x + lw softplus(-x), lw = 1 + (pw-1) y; (1-y) - lw sigmoid(-x); lw s (1-s)
    ("binary_cross_entropy_with_logits", {}, 0.0, 1.0, LN2, -0.5, 0.25),
    ("binary_cross_entropy_with_logits", {}, LN3, 0.0, LN4, 0.75, 0.1875),  # ln 3 + ln(4/3); s = 3/4
    ("binary_cross_entropy_with_logits", {"pos_weight": 2.0}, 0.0, 1.0, 2 * LN2, -1.0, 0.5),
    ("binary_cross_entropy_with_logits", {"label_smoothing": 0.5}, 0.0, 1.0, LN2, -0.25, 0.25),  # y -> 3/4
    # binary_focal: alpha < 0 and gamma = 0 is plain BCE on logits; at x = 0, y = 1 with the defaults
    # (alpha 1/4, gamma 2): l = a ce q^2 with ce = ln 2, q = 1/2, ce' = -1/2, q' = -1/4, q'' = 0, ce'' = 1/4
    ("binary_focal", {"alpha": -1.0, "gamma": 0.0}, 0.0, 1.0, LN2, -0.5, 0.25),
    ("binary_focal", {}, 0.0, 1.0, LN2 / 16, -0.03125 - LN2 / 16, 0.078125 + LN2 / 32),
    # hinge: t = +-1 (0 counts as -1); max(0, 1 - t x), -t where t x < 1
    ("hinge", {}, 0.25, 1.0, 0.75, -1.0, 0.0),
    ("hinge", {}, 0.5, -1.0, 1.5, 1.0, 0.0),
    ("hinge", {}, 2.0, 1.0, 0.0, 0.0, 0.0),
    ("hinge", {}, -3.0, 0.0, 0.0, 0.0, 0.0),
    ("hinge", {}, 0.5, 0.0, 1.5, 1.0, 0.0),  # target 0 is the class -1
    # hinge_embedding (torch's masks), m = margin - x: [y != -1] x + [y != 1] max(0, m);  [y != -1] - [y != 1][m >= 0]
    ("hinge_embedding", {}, 0.5, 1.0, 0.5, 1.0, 0.0),
    ("hinge_embedding", {}, 0.5, -1.0, 0.5, -1.0, 0.0),
    ("hinge_embedding", {}, 2.0, -1.0, 0.0, 0.0, 0.0),
    ("hinge_embedding", {}, 1.0, -1.0, 0.0, -1.0, 0.0),  # the kink m = 0: torch's gradient -1
    ("hinge_embedding", {}, -3.0, 1.0, -3.0, 1.0, 0.0),  # y = 1: the input itself, negative too
    ("hinge_embedding", {}, 0.5, 0.0, 1.0, 0.0, 0.0),  # any other target: both terms, as torch
    ("hinge_embedding", {"margin": 2.0}, -1.0, -1.0, 3.0, -1.0, 0.0),
    # squared_hinge: m = max(0, 1 - t x): m^2, -2 t m, 2 where m > 0
    ("squared_hinge", {}, 0.25, 1.0, 0.5625, -1.5, 2.0),
    ("squared_hinge", {}, 0.5, -1.0, 2.25, 3.0, 2.0),
    ("squared_hinge", {}, 3.0, 1.0, 0.0, 0.0, 0.0),
    # zero_one (a metric: value only): 1 if (x > threshold) != (y > 0)
    ("zero_one", {}, 0.7, 1.0, 0.0, None, None),
    ("zero_one", {}, 0.7, 0.0, 1.0, None, None),
    ("zero_one", {}, 0.2, -1.0, 0.0, None, None),
    ("zero_one", {}, 0.5, 1.0, 1.0, None, None),  # x = threshold is not above it
    ("zero_one", {"threshold": 0.0}, 0.2, -1.0, 1.0, None, None),
]


# Multiclass rows (one row of logits): (loss, params, logits, target label or probability row, value,
# gradient row, Hessian-diagonal row). p = softmax(logits); the uniform logits and ln 3 give p in quarters.
MC_TABLE = [
    # cross_entropy: lse - z_t; p - onehot; p (1 - p)
    ("cross_entropy", {}, [0.0, 0.0, 0.0, 0.0], 2, LN4, [0.25, 0.25, -0.75, 0.25], [0.1875] * 4),
    ("cross_entropy", {}, [0.0, LN3], 0, LN4, [-0.75, 0.75], [0.1875, 0.1875]),
    ("cross_entropy", {}, [0.0, LN3], [0.5, 0.5], LN4 - 0.5 * LN3, [-0.25, 0.25], [0.1875, 0.1875]),  # soft
    # label smoothing 0.5 with C = 2: the target row becomes (3/4, 1/4)
    ("cross_entropy", {"label_smoothing": 0.5}, [0.0, 0.0], 0, LN2, [-0.25, 0.25], [0.25, 0.25]),
    # class weights: cw_t (lse - z_t), and its derivatives scaled by cw_t
    ("cross_entropy", {"class_weight": [2.0, 1.0]}, [0.0, LN3], 0, 2 * LN4, [-1.5, 1.5], [0.375, 0.375]),
    # categorical_focal with gamma = 0 is cross-entropy; gamma = 2 at p_t = 1/2:
    # l = -(1/2)^2 ln(1/2); F = 1/4 + ln 2 / 2, F'(p_t) = -2: g = F (p - onehot), h = F p(1-p) - F' p_t (p - onehot)^2
    ("categorical_focal", {"gamma": 0.0}, [0.0, 0.0, 0.0, 0.0], 2, LN4, [0.25, 0.25, -0.75, 0.25], [0.1875] * 4),
    ("categorical_focal", {}, [0.0, 0.0], 0, LN2 / 4, [-(0.125 + LN2 / 4), 0.125 + LN2 / 4],
     [0.3125 + LN2 / 8, 0.3125 + LN2 / 8]),
    # multi_margin, margin 1, target 0, x = (1, 1/2, -1): v_j = x_j, only j = 1 active; C = 3
    ("multi_margin", {}, [1.0, 0.5, -1.0], 0, 1 / 6, [-1 / 3, 1 / 3, 0.0], [0.0, 0.0, 0.0]),
    ("multi_margin", {"p": 2}, [1.0, 0.5, -1.0], 0, 1 / 12, [-1 / 3, 1 / 3, 0.0], [2 / 3, 2 / 3, 0.0]),
    # kl_div_with_logits: sum q log q - sum q log p; S p - q; S p (1 - p)  (S = sum q = 1)
    ("kl_div_with_logits", {}, [0.0, 0.0], [0.25, 0.75], 0.75 * LN3 - LN2, [0.25, -0.25], [0.25, 0.25]),
    # temperature 2: z = x / 2 = (0, ln 3), p = (1/4, 3/4); the derivatives pick up 1/T and 1/T^2
    ("kl_div_with_logits", {"temperature": 2.0}, [0.0, 2 * LN3], [0.5, 0.5], LN2 - 0.5 * LN3, [-0.125, 0.125],
     [0.046875, 0.046875]),
    ("kl_div_with_logits", {"log_target": True}, [0.0, 0.0], [-LN4, LN3 - LN4], 0.75 * LN3 - LN2, [0.25, -0.25], [0.25, 0.25]),
    # jensen_shannon (Liger's, m = beta q + (1 - beta) p): p = (1/4, 3/4), q = (3/4, 1/4). beta = 1/2: m = (1/2, 1/2),
    # r = log(p / m) = (-ln 2, ln 3 - ln 2), R = sum p r, g = (1 - beta) p (r - R), v = beta q / m = (3/4, 1/4),
    # h_j = (1 - beta) p_j ((1 - 2 p_j)(r_j - R) + v_j (1 - p_j)^2 + p_j p_k v_k)
    ("jensen_shannon", {}, [0.0, LN3], [0.75, 0.25], 0.75 * LN3 - LN2, [-3 / 32 * LN3, 3 / 32 * LN3],
     [15 / 256 - 3 / 64 * LN3, 15 / 256 - 3 / 64 * LN3]),
    # the ends: beta = 0 is KL(q || p) (g = p - q, h = p (1 - p)); beta = 1 is KL(p || q) (r = log(p / q) = (-ln 3,
    # ln 3), g = p (r - R), h = p ((1 - 2 p)(r - R) + 1 - p))
    ("jensen_shannon", {"beta": 0.0}, [0.0, LN3], [0.75, 0.25], 0.5 * LN3, [-0.5, 0.5], [0.1875, 0.1875]),
    ("jensen_shannon", {"beta": 1.0}, [0.0, LN3], [0.75, 0.25], 0.5 * LN3, [-0.375 * LN3, 0.375 * LN3],
     [0.1875 - 0.1875 * LN3, 0.1875 - 0.1875 * LN3]),
    # multilabel_soft_margin: 1/C sum cw (y softplus(-x) + (1-y) softplus(x)); cw (sigmoid(x) - y) / C;
    # cw sigmoid(x) sigmoid(-x) / C. x = (0, ln 3): sigmoid = (1/2, 3/4), softplus(ln 3) = ln 4, softplus(-ln 3) = ln 4/3
    ("multilabel_soft_margin", {}, [0.0, LN3], [1.0, 0.0], 1.5 * LN2, [-0.25, 0.375], [0.125, 3 / 32]),
    ("multilabel_soft_margin", {"class_weight": [2.0, 1.0]}, [0.0, LN3], [0.5, 0.25], 2 * LN2 - 0.125 * LN3,
     [0.0, 0.25], [0.25, 3 / 32]),
    # poly1: -log p_t + e (1 - p_t); (1 + e p_t)(p - onehot); h_t = p_t o (1 - e (o - p_t)), h_j = p_j (1 - p_j)
    # + e p_t p_j (1 - 2 p_j) (o = 1 - p_t). Uniform C = 4: p = 1/4, e = 2 and 1
    ("poly1", {}, [0.0, 0.0, 0.0, 0.0], 2, 2 * LN2 + 1.5, [0.375, 0.375, -1.125, 0.375], [0.25, 0.25, 0.0, 0.25]),
    ("poly1", {"epsilon": 1.0}, [0.0, 0.0, 0.0, 0.0], 2, 2 * LN2 + 0.75, [0.3125, 0.3125, -0.9375, 0.3125],
     [7 / 32, 7 / 32, 3 / 32, 7 / 32]),
    # soft q = (1/2, 1/2), p = (1/4, 3/4): P = 1/2 = q_j, so the poly term leaves g and h as cross-entropy's
    ("poly1", {}, [0.0, LN3], [0.5, 0.5], 2 * LN2 - 0.5 * LN3 + 1.0, [-0.25, 0.25], [0.1875, 0.1875]),
    # categorical_hinge: max(neg - pos + 1, 0), pos = sum y x, neg = max (1 - y) x; (1 - y_j)[j = m] - y_j; 0
    ("categorical_hinge", {}, [0.5, 2.0, -1.0], 0, 2.5, [-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]),
    # Keras's quirk: the true class's (1 - 1) x_t = 0 is the max here (every other logit is negative)
    ("categorical_hinge", {}, [-1.0, -2.0, 0.5], 2, 0.5, [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]),
    ("categorical_hinge", {}, [1.0, 2.0, -1.0], [0.5, 0.5, 0.0], 0.5, [-0.5, 0.0, 0.0], [0.0, 0.0, 0.0]),
    ("categorical_hinge", {}, [3.0, 0.0, 0.0], 0, 0.0, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
]


def _mc_args(row):
    name, kw, x, t = row[:4]
    x = np.array([x])
    t = np.array([t]) if isinstance(t, int) else np.array([t], dtype=np.float64)
    return name, kw, x, t


@pytest.mark.parametrize("row", MC_TABLE, ids=[f"{r[0]}{r[1] or ''}-{i}" for i, r in enumerate(MC_TABLE)])
def test_multiclass_reference_matches_hand_table(row):
    name, kw, x, t = _mc_args(row)
    value, grad, hess = _reference.reduce_multiclass(name, x, t, reduction="sum", **full_params(name, kw))
    assert value == pytest.approx(row[4], rel=1e-14, abs=1e-300)
    np.testing.assert_allclose(grad[0], row[5], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(hess[0], row[6], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("row", MC_TABLE, ids=[f"{r[0]}{r[1] or ''}-{i}" for i, r in enumerate(MC_TABLE)])
def test_multiclass_backends_match_hand_table(row, backend):
    name, kw, x, t = _mc_args(row)
    require_support(backend, name, np.float64)
    loss = loss_fn(name)
    assert loss(x, t, reduction="sum", backend=backend, **kw) == pytest.approx(row[4], rel=1e-13, abs=1e-300)
    g, h = loss.grad_hess(x, t, reduction="sum", backend=backend, **kw)
    np.testing.assert_allclose(g[0], row[5], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(h[0], row[6], rtol=1e-13, atol=1e-15)


def _ids():
    return [f"{name}{''.join(f'-{k}={v}' for k, v in kw.items())}-p={p:g}-y={y:g}" for name, kw, p, y, *_ in TABLE]


def _check(value, grad, hess, row, rtol):
    name, kw, p, y, l_exp, g_exp, h_exp = row
    for what, got, exp in (("value", value, l_exp), ("gradient", grad, g_exp), ("hessian", hess, h_exp)):
        if exp is None:  # not differentiable: no derivatives to check
            continue
        got = float(np.asarray(got).reshape(-1)[0])
        assert got == pytest.approx(exp, rel=rtol, abs=1e-300), (
            f"{name}{kw} at p={p!r}, y={y!r}: {what} {got!r}, hand-computed {exp!r}")


@pytest.mark.parametrize("row", TABLE, ids=_ids())
def test_reference_matches_hand_table(row):
    name, kw, p, y = row[:4]
    value, grad, hess = _reference.elementwise(name, np.array([p]), np.array([y]), **full_params(name, kw))
    _check(value, grad, hess, row, rtol=1e-14)


@pytest.mark.parametrize("row", TABLE, ids=_ids())
def test_backends_match_hand_table(row, backend):
    """Through the public API, reduction="none" and "sum" (n = 1, so both are the elementwise numbers)."""
    name, kw, p, y = row[:4]
    require_support(backend, name, np.float64)
    loss = loss_fn(name)
    pa, ya = np.array([p]), np.array([y])
    value = loss(pa, ya, reduction="none", backend=backend, **kw)
    if REGISTRY[name].differentiable:
        grad, hess = loss.grad_hess(pa, ya, reduction="none", backend=backend, **kw)
    else:
        grad = hess = None
    _check(value, grad, hess, row, rtol=1e-13)
    total = loss(pa, ya, reduction="sum", backend=backend, **kw)
    assert total == pytest.approx(row[4], rel=1e-13, abs=1e-300)


# (sequence, pairwise and overlap losses have their hand tables with their tests: tests/test_ctc.py,
# tests/test_pairwise.py, tests/test_overlap.py)
@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items()
                                        if s.kind not in ("sequence", "pairwise", "overlap")))
def test_every_loss_has_hand_computed_rows(name):
    rows = [r for r in TABLE + MC_TABLE if r[0] == name]
    assert rows, f"{name}: no hand-computed rows (add some to TABLE or MC_TABLE in {__name__})"
    # every non-default parameter value in the VARIANTS table need not appear, but the defaults must
    assert any(r[1] == {} for r in rows), f"{name}: no row at the registry defaults"


def test_registry_entries_are_complete():
    """Every registry entry is usable by the dispatcher and the tests: formula, reference, valid defaults."""
    for name, spec in REGISTRY.items():
        assert spec.name == name
        assert spec.kind in ("elementwise", "multiclass", "sequence", "pairwise", "overlap"), \
            f"{name}: unknown kind {spec.kind!r}"
        assert spec.formula and spec.summary, name
        oracle = {"elementwise": _reference.ELEMENTWISE, "multiclass": getattr(_reference, "MULTICLASS", {}),
                  "sequence": getattr(_reference, "SEQUENCE", {}),
                  "pairwise": getattr(_reference, "PAIRWISE", {}),
                  "overlap": getattr(_reference, "OVERLAP", {})}[spec.kind]
        assert name in oracle, f"{name}: no reference implementation"
        for p in spec.params:
            assert p.check(p.convert(p.default)) is None, f"{name}: default {p.name}={p.default!r} is invalid"
        if spec.builtin:  # a user's loss (one another test defined) is not an attribute of the package
            assert isinstance(getattr(fl, name), fl.Loss), f"{name} is not exported as fusedloss.{name}"
        if spec.kind == "elementwise" and spec.vector_param is None:
            packed = spec.packed(full_params(name))
            assert all(type(v) is float for v in packed), f"{name}: packed parameters must be floats"
            assert spec.unpack(*packed) == full_params(name), f"{name}: packed/unpack do not round-trip"


def test_variant_table_names_real_parameters():
    from conftest import MC_VARIANTS, VARIANTS

    for name, rows in [*VARIANTS.items(), *MC_VARIANTS.items()]:
        assert name in REGISTRY, f"VARIANTS / MC_VARIANTS name unknown loss {name}"
        expected = "multiclass" if name in MC_VARIANTS else "elementwise"
        assert REGISTRY[name].kind == expected, f"{name} ({REGISTRY[name].kind}) is in the {expected} variant table"
        for kw in rows:
            assert set(kw) <= set(REGISTRY[name].param_names), (name, kw)
            for p in REGISTRY[name].params:
                if p.name in kw:
                    assert p.check(p.convert(kw[p.name])) is None, (name, kw)
    for name, spec in REGISTRY.items():
        if spec.kind == "elementwise" and spec.differentiable:
            assert spec.kinks is not None, f"{name}: declare its kinks (|d| where it switches branch) in _spec.py"


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if s.kind in ("elementwise", "multiclass")])
def test_every_parameter_is_varied(name):
    """Each parameter takes a value other than its default in some row of VARIANTS / MC_VARIANTS (the ignored
    label varies through the data: make_multiclass_data ignores a fifth of the rows)."""
    from conftest import MC_VARIANTS, VARIANTS

    spec = REGISTRY[name]
    defaults = spec.defaults()
    rows = VARIANTS.get(name, []) + MC_VARIANTS.get(name, [])
    varied = {k for kw in rows for k, v in kw.items() if not _same(v, defaults[k])}
    missing = [p.name for p in spec.params if p.name not in varied and p.name != spec.ignore_param]
    assert not missing, f"{name}: no VARIANTS / MC_VARIANTS row (tests/conftest.py) varies {missing}"


def _same(a, b) -> bool:
    return a is b or (np.ndim(a) == 0 and np.ndim(b) == 0 and a == b)


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if s.kind in ("elementwise", "multiclass")])
def test_every_domain_is_declared_and_generated(name):
    """The domains of a loss, at its defaults and every variant row, are among _spec's PRED_DOMAINS /
    TARGET_DOMAINS, and make_data draws inside them (it raises for a domain it has no generator for)."""
    from conftest import MC_VARIANTS, VARIANTS, make_data

    spec = REGISTRY[name]
    for kw in [{}] + VARIANTS.get(name, []) + MC_VARIANTS.get(name, []):
        params = full_params(name, kw)
        assert spec.pred_domain_for(params) in PRED_DOMAINS, (name, kw, spec.pred_domain_for(params))
        assert spec.target_domain_for(params) in TARGET_DOMAINS, (name, kw, spec.target_domain_for(params))
        if spec.kind == "elementwise":
            make_data(name, kw, (16,), np.float64)
