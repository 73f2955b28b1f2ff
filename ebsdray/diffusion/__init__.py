"""ebsdray.diffusion"""
