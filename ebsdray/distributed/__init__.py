"""ebsdray.distributed"""
