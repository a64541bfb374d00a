"""The objective and the counting rule every part of monitoring shares (no imports: the generators read it).

* :data:`TARGET`: the availability objective of the integration, 99.9% (the mission's success metric); the
  error budget is ``1 - TARGET`` of the time;
* :data:`GRACE`: a probe round stands for the environment's state for at most ``GRACE`` x its recorder's
  interval; longer without a round is a gap, counted as unknown.
"""

TARGET = 0.999
GRACE = 2.0
