// The layer build trigger lives in scripts/ (the demo and the bench use it too); tests import it from here.
export { ensureLayer, ensureServerLayer, isLayerBuilt, LAYER_DIR, layerRoot, REPO_ROOT, serverLayerRoot, type Architecture } from '../../scripts/layer.ts';
