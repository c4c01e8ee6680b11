// The layer build trigger lives in scripts/ (the demo and the bench use it too); tests import it from here.
export { ensureLayer, isLayerBuilt, LAYER_DIR, layerRoot, REPO_ROOT, type Architecture } from '../../scripts/layer.ts';
