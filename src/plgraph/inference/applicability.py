"""Is a prediction within the model's domain? Checks recorded per CSV row by ``predict.py``.

A graph network returns a number for any graph: a whole protein chain given as the "ligand" got
pK 155, the same chain overlapping the protein pK -7.9, both as ``ok``. Three checks, each cheap
and each on what the featurizer already computed, mark such rows ``out_of_domain`` with the
reasons (the value is still written: the row says why not to trust it):

- size: the ligand's heavy-atom count is far outside the training range stored in the
  checkpoint (below ``smallest / SIZE_FACTOR`` or above ``largest * SIZE_FACTOR``);
- clash: a ligand heavy atom closer than ``CLASH_DISTANCE_A`` to a protein heavy atom. Real
  contacts are longer: hydrogen bonds ~2.6 Å, metal coordination ~2.0 Å, a covalent ligand's
  single bond to the protein 1.4-1.8 Å (the closest pairs in data/sample, the PDBbind toy set
  and the FEP benchmark are 1.44 Å); only overlapping atoms (a wrong frame, a pose through the
  protein) come closer;
- value: the predicted pK outside ``PHYSICAL_PK``: Kd above 10 M is no binding, below 1e-16 M
  is tighter than any measured complex (streptavidin-biotin is ~1e-14 M).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch_geometric.data import HeteroData

from plgraph.data.records import PLAUSIBLE_PK
from plgraph.featurize import INTERACTION, LIGAND

SIZE_FACTOR = 1.5
CLASH_DISTANCE_A = 1.2
PHYSICAL_PK = PLAUSIBLE_PK


def domain_warnings(graph: HeteroData, predicted: float,
                    training_sizes: Sequence[int] | None) -> list[str]:
    """The reasons a prediction is outside the model's domain ([] when none).

    Args:
        graph: the complex as featurized for the model.
        predicted: the predicted pK (the ensemble mean).
        training_sizes: [smallest, largest] ligand heavy-atom count of the training data, from
            the checkpoint; None for a checkpoint written before it was stored (no size check).
    """
    reasons = []
    atoms = int(graph[LIGAND].x.shape[0])
    if training_sizes:
        smallest, largest = training_sizes
        if atoms < smallest / SIZE_FACTOR or atoms > largest * SIZE_FACTOR:
            reasons.append(f"ligand size: {atoms} heavy atoms, the model was trained on "
                           f"{smallest} to {largest}")
    distance = graph[INTERACTION].distance
    overlapping = distance < CLASH_DISTANCE_A
    if bool(overlapping.any()):
        ligand_atoms = graph[INTERACTION].edge_index[0][overlapping].unique().numel()
        reasons.append(f"clash: {ligand_atoms} ligand heavy atoms within {CLASH_DISTANCE_A} Å of "
                       f"a protein heavy atom (closest {float(distance.min()):.2f} Å)")
    low, high = PHYSICAL_PK
    if not low <= predicted <= high:
        reasons.append(f"predicted pK {predicted:.2f} outside the physical range {low:g} to "
                       f"{high:g}")
    return reasons
