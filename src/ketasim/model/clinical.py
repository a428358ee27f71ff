"""Clinical: depression severity (MADRS, HAM-D), expectancy, the natural course, SSRI adaptation,
psychotherapy, dissociation, drug liking, blood pressure, heart rate and sedation.

Latent severity ``D`` (MADRS points) relaxes towards a target that equals the patient's true
baseline before treatment and moves with the layers below (multiplicatively, so it stays positive
and below the baseline):

    D* = MADRS0 x L x exp(-g r (c - c0)) x exp(s_i g_i (IL6 - IL6_0) / IL6_healthy) x exp(-s_h g_h H)
              x exp(-rho (Xa + Xs)) x (1 - e_ssri Z) x (1 - e_skill K / (1 + K))

* ``L`` is the illness load left by the natural course: it starts at 1 and falls at the patient's
  natural recovery rate (episodic depression remits over months without treatment, Whiteford
  2013; a chronic course, as in treatment-resistant depression, does not).
* ``c`` is prefrontal synaptic strength (circuit layer), ``c0`` its baseline: stronger prefrontal
  synapses mean less severity. ``r`` is 1 for patients whose illness responds to the plasticity
  route and 0 for the share whose illness does not (the population layer draws it).
* ``Xa`` and ``Xs`` are the acute and the sustained expectancy (placebo response): both follow
  the recent treatment contacts (every dose, inert ones included, and every therapy session), the
  acute within hours, the sustained over weeks, so a placebo arm improves over weeks rather than
  days (Posternak & Zimmerman 2005). ``rho`` is the patient's placebo responsiveness.
* ``H`` is the lateral-habenula burst blockade (receptor layer); ``s_i`` and ``s_h`` are the
  switches of the ``inflammation`` and ``habenula_trapping`` mechanisms (``model/mechanisms.py``).
  Under ``expectancy_perceptible`` a felt drug (dissociation, sedation) adds to the contacts.
* ``Z`` is the slow adaptation to serotonin transporter occupancy (SSRIs: onset over weeks).
* ``K`` is the skill consolidated by psychotherapy: each session leaves a learning signal that is
  consolidated in proportion to prefrontal plasticity at the time (``(c/c0)^gamma``), so ketamine
  opens a window in which therapy works better and lasts longer.

HAM-D-17 follows by the equipercentile linking of Leucht 2018 (MADRS ~ 1.3 x HAM-D). Dissociation
(CADSS) rises linearly with ketamine at an effect site (Bowdle 1998) above a low threshold. Being an
effect of NMDA channel block, it follows the enantiomers weighted by their NMDA affinity, in
racemic-equivalent ng/mL (``dissociating_ketamine``): total ketamine while S and R are equal, as
in the racemate that Bowdle and the CADSS target used (S is cleared a little faster, so a little
less later), about 1.65 times the plasma level for esketamine and 0.35 times for arketamine
(R-ketamine at equimolar doses produces no psychotomimetic state, Vollenweider FX et al. Eur
Neuropsychopharmacol 1997;7:25). Norketamine, a weaker blocker, is left out: in volunteers
S-norketamine antagonised S-ketamine's perceptual effects rather than adding to them (Olofsen E et
al. Anesthesiology 2022;136:792). Drug liking, the primary endpoint of human abuse-potential studies
(a bipolar visual analogue scale: 0 strongest disliking, 50 neutral, 100 strongest liking), follows
the same effect site: every subjective item Bowdle rated, euphoria among them, rose linearly with
the ketamine level over 50-200 ng/mL, so liking rises above neutral with the level that dissociates,
saturating at the scale's end (a sigmoid Emax model, ``50 + 50 F^n / (F^n + EC50^n)``, ``F`` the
level that dissociation reads). Its EC50 is calibrated to IV ketamine's mean Emax in recreational
drug users (Shram 2023), its steepness ``n`` so that the curve through that point is as near a
straight line over Bowdle's steps as it can be (``calibrate/liking.py``); a faster rise of the same
dose gives a higher effect-site peak and so more liking. It describes such users, not patients, and
leaves out tolerance across sessions (no per-session numbers were found; README, "Abuse liability").
Blood pressure and heart rate follow total ketamine at their own effect site through a sigmoid Emax
model; sedation follows midazolam.
What a rater records around ``D`` (rating error, day-to-day fluctuation, screening) is the
population layer's observation model, not part of the vector field.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Layer, Variable

#: the bipolar drug-liking scale (0-100): its neutral point and the span from there to strongest liking
DRUG_LIKING_NEUTRAL = 50.0
DRUG_LIKING_SPAN = 50.0


class Clinical(Layer):
    """What the patient experiences and what a rater or a cuff measures."""

    name: ClassVar[str] = "clinical"
    optional_inputs: ClassVar[dict[str, str]] = {"probes.opioid_permission": "plasticity.full_opioid_permission"}

    def states(self) -> tuple[Variable, ...]:
        return (
            Variable("severity", "points", "latent depression severity on the MADRS scale"),
            Variable("illness_load", "fraction", "share of the baseline illness not yet resolved by its natural course"),
            Variable("treatment_contact", "1", "recent treatment contacts (doses and sessions), fading"),
            Variable("expectancy_acute", "1", "acute expectancy (log-fold severity reduction), within hours"),
            Variable("expectancy_sustained", "1", "sustained expectancy (log-fold severity reduction), over weeks"),
            Variable("ssri_adaptation", "fraction", "slow adaptation to SERT occupancy"),
            Variable("therapy_signal", "1", "learning signal left by recent therapy sessions"),
            Variable("therapy_skill", "1", "consolidated therapy skill"),
            Variable("dissociation_site", "ng/mL", "racemic-equivalent ketamine at the dissociation effect site"),
            Variable("pressor_site", "ng/mL", "ketamine at the cardiovascular effect site"),
            Variable("perceived_drug_effect", "1", "recent perceptible drug effects (dissociation, sedation), fading"),
        )

    #: states reported as they are
    REPORTED_STATES = ("illness_load", "therapy_skill")

    def outputs(self) -> tuple[Variable, ...]:
        return (
            Variable("madrs", "points", "MADRS total score"),
            Variable("hamd", "points", "HAM-D-17 total score (Leucht 2018 linking)"),
            Variable("expectancy", "fraction", "expectancy (placebo) reduction of severity"),
            *(v for v in self.states() if v.name in self.REPORTED_STATES),
            Variable("cadss", "points", "CADSS dissociation score"),
            Variable("drug_liking", "points",
                     "drug liking at the moment, bipolar visual analogue scale (0-100, 50 neutral)"),
            Variable("sbp", "mmHg", "systolic blood pressure"),
            Variable("dbp", "mmHg", "diastolic blood pressure"),
            Variable("heart_rate", "1/min", "heart rate"),
            Variable("sedation", "fraction", "sedation (benzodiazepine effect)"),
        )

    @staticmethod
    def expectancy_log_reduction(x, p):
        """rho x (Xa + Xs): the log-fold fall of severity that expectancy brings."""
        return p["placebo_responsiveness"] * (x["expectancy_acute"] + x["expectancy_sustained"])

    @staticmethod
    def severity_target(x, p, c, inp, m):
        strength = inp["circuit.prefrontal_strength"]
        # inflammation mechanism: IL-6 above the patient's own baseline adds to the symptom load
        il6_rise = (p["mechanism.inflammation"] * (inp["inflammation.il6"] / 1000.0 - c["il6_baseline"])
                    / p["inflammation.il6_healthy"])
        # habenula_trapping mechanism: silenced lateral-habenula bursts relieve symptoms (Yang 2018)
        habenula = (p["mechanism.habenula_trapping"] * p["habenula_symptom_gain"]
                    * inp["probes.opioid_permission"] * inp["receptor.habenula_burst_blockade"])
        skill = x["therapy_skill"]
        return (c["baseline_madrs"] * x["illness_load"]
                * m.exp(-p["strength_symptom_gain"] * c["plasticity_responsive"]
                        * (strength - c["synaptic_density_baseline"]))
                * m.exp(p["il6_symptom_gain"] * il6_rise)
                * m.exp(-habenula)
                * m.exp(-Clinical.expectancy_log_reduction(x, p))
                * (1.0 - p["ssri_max_effect"] * x["ssri_adaptation"])
                * (1.0 - p["skill_max_effect"] * skill / (1.0 + skill)))

    @staticmethod
    def perceptible_effect(p, x, sedation):
        """How strongly a drug is felt now (0 to 1): dissociation or sedation, whichever is felt."""
        cadss = Clinical.cadss(p, x["dissociation_site"])
        dissociation = cadss / (cadss + p["cadss_perceptible50"])
        return 1.0 - (1.0 - dissociation) * (1.0 - sedation)

    def derivatives(self, x, p, c, inp, m) -> dict[str, Any]:
        # expectancy_perceptible mechanism: a drug that is felt counts as more of a treatment contact
        contacts = (x["treatment_contact"] + p["mechanism.expectancy_perceptible"]
                    * p["perceptible_expectancy_weight"] * x["perceived_drug_effect"])
        engaged = contacts / (contacts + p["expectancy_half_contacts"])
        plasticity = (inp["circuit.prefrontal_strength"] / c["synaptic_density_baseline"]) ** p["plasticity_exponent"]
        ketamine = inp["pk.ketamine_plasma"]
        return {
            "severity": p["k_severity"] * (self.severity_target(x, p, c, inp, m) - x["severity"]),
            "illness_load": -p["natural_recovery_rate"] * c["episodic_course"] * x["illness_load"],
            "treatment_contact": -p["k_contact_fading"] * x["treatment_contact"],
            "expectancy_acute": p["k_expectancy_acute"] * (p["expectancy_acute_max"] * engaged - x["expectancy_acute"]),
            "expectancy_sustained": p["k_expectancy_sustained"]
            * (p["expectancy_sustained_max"] * engaged - x["expectancy_sustained"]),
            "ssri_adaptation": p["k_ssri_adaptation"] * (inp["comparators.sert_occupancy"] - x["ssri_adaptation"]),
            "therapy_signal": -p["k_therapy_signal"] * x["therapy_signal"],
            "therapy_skill": p["k_consolidation"] * plasticity * x["therapy_signal"]
            - p["k_skill_forgetting"] * x["therapy_skill"],
            "dissociation_site": p["keo_dissociation"] * (self.dissociating_ketamine(p, inp) - x["dissociation_site"]),
            "pressor_site": p["keo_pressor"] * (ketamine - x["pressor_site"]),
            "perceived_drug_effect": p["k_perception"] * self.perceptible_effect(p, x, self.sedation(p, inp))
            - p["k_contact_fading"] * x["perceived_drug_effect"],
        }

    @staticmethod
    def sedation(p, inp):
        mdz = inp["comparators.midazolam_plasma"]
        return mdz / (mdz + p["sedation_ec50_midazolam"])

    def observe(self, x, p, c, inp, m) -> dict[str, Any]:
        h = p["pressor_hill"]
        pressor = x["pressor_site"] ** h / (x["pressor_site"] ** h + p["pressor_ec50"] ** h)
        return {
            "madrs": x["severity"],
            "hamd": x["severity"] / p["madrs_per_hamd"],
            "expectancy": 1.0 - m.exp(-self.expectancy_log_reduction(x, p)),
            **{name: x[name] for name in self.REPORTED_STATES},
            "cadss": self.cadss(p, x["dissociation_site"]),
            "drug_liking": self.drug_liking(p, x["dissociation_site"]),
            "sbp": p["sbp_baseline"] + p["sbp_emax"] * pressor,
            "dbp": p["dbp_baseline"] + p["dbp_emax"] * pressor,
            # rates are per hour inside the model; the heart rate is reported per minute
            "heart_rate": (p["heart_rate_baseline"] + p["heart_rate_emax"] * pressor) / 60.0,
            "sedation": self.sedation(p, inp),
        }

    @staticmethod
    def dissociating_ketamine(p, inp):
        """Plasma ketamine weighted by NMDA affinity (racemic-equivalent ng/mL): S + w R with
        w = Ki(S) / Ki(R) (Ebert 1997: the receptor layer's constants, which vary between patients),
        scaled by 2 / (1 + w) so that equal S and R count as their total, as in Bowdle's racemate."""
        w = p["receptor.ki_s_ketamine"] / p["receptor.ki_r_ketamine"]
        return 2.0 * (inp["pk.s_ketamine_plasma"] + w * inp["pk.r_ketamine_plasma"]) / (1.0 + w)

    @staticmethod
    def felt_ketamine(p, conc):
        """The effect-site level that is felt (ng/mL): ``conc`` fading below a low threshold."""
        h = p["dissociation_threshold_hill"]
        return conc * conc ** h / (conc ** h + p["dissociation_threshold"] ** h)

    @staticmethod
    def cadss(p, conc):
        """Linear in the felt level over 50-200 ng/mL (Bowdle 1998)."""
        return p["cadss_slope"] * Clinical.felt_ketamine(p, conc)

    @staticmethod
    def drug_liking(p, conc):
        """Bipolar drug-liking VAS: neutral plus up to the scale's span, a sigmoid Emax in the felt
        level whose steepness makes it nearly linear in the level over Bowdle's 0-200 ng/mL."""
        felt = Clinical.felt_ketamine(p, conc) ** p["drug_liking_hill"]
        return DRUG_LIKING_NEUTRAL + DRUG_LIKING_SPAN * felt / (felt + p["drug_liking_ec50"] ** p["drug_liking_hill"])

    def initial_state(self, p, c) -> dict[str, Any]:
        out = {v.name: 0.0 for v in self.states()}
        out["severity"] = c["baseline_madrs"]
        out["illness_load"] = 1.0
        return out
