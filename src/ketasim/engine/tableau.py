"""Rodas4 (Hairer & Wanner, rodas.f METH=1): the coefficients and step control shared by every backend.

An L-stable, stiffly accurate Rosenbrock method of order 4 with an embedded order-3 error estimate.
Stage i solves (I / (h GAMMA) - J) k_i = f(y + sum_j A[i][j] k_j) + sum_j C[i][j] k_j / h; the sixth
stage's argument is the fifth's plus k_5, the solution is that plus k_6, and k_6 is the error.
"""

GAMMA = 0.25
A21 = 1.544
A31, A32 = 0.9466785280815826, 0.2557011698983284
A41, A42, A43 = 3.314825187068521, 2.896124015972201, 0.9986419139977817
A51, A52, A53, A54 = 1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950
C21 = -5.6688
C31, C32 = -2.430093356833875, -0.2063599157091915
C41, C42, C43 = -0.1073529058151375, -9.594562251023355, -20.47028614809616
C51, C52, C53, C54 = 7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160
C61, C62, C63, C64, C65 = (8.083246795921522, -7.981132988064893, -31.52159432874371,
                           16.31930543123136, -6.058818238834054)

#: the same coefficients as rows (stage i reads A[i], C[i]), for backends that loop over stages
A = ((), (A21,), (A31, A32), (A41, A42, A43), (A51, A52, A53, A54))
C = ((), (C21,), (C31, C32), (C41, C42, C43), (C51, C52, C53, C54), (C61, C62, C63, C64, C65))

#: step-size control: safety factor and bounds on the change of h per step
SAFETY, FAC_MIN, FAC_MAX = 0.9, 0.2, 6.0
